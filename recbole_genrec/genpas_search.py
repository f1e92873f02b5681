"""GenPAS training-free parameter search from the command line.

    python -m recbole_genrec.genpas_search --dataset=beauty \
        --config_files=properties/dataset/beauty.yaml [--genpas_top_k=5 --genpas_ad_queries=2000 ...]

Loads the dataset exactly as training would (same config files, filters and split), prints the
KL table and the ranked candidates, writes ``genpas_search_<dataset>.json`` and
``genpas_search_<dataset>_kl.png`` to ``genpas_search_out`` (default ``<checkpoint_dir>/genpas_search``)
and prints the ``--train_sampler=genpas ...`` flags of the top-k. Other ``--key=value`` pairs are
read by ``Config`` as in ``run_recbole_genrec.py``. The code lives in
:mod:`recbole_genrec.analysis.genpas_search`.
"""

import argparse
import sys

from recbole_genrec.analysis.genpas_search import format_table, search_from_config
from recbole_genrec.config import Config
from recbole_genrec.errors import UserError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--model", "-m", type=str, default="SASRec",
                        help="sequential model whose config/MAX_ITEM_LIST_LENGTH to use (no training)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    args, _ = parser.parse_known_args(argv)  # other --key=value pairs are read by Config
    config = Config(
        model=args.model,
        dataset=args.dataset,
        config_file_list=args.config_files.strip().split(" ") if args.config_files else None,
    )
    result = search_from_config(config)
    print(format_table(result))
    print(f"JSON: {result['outputs'][0]}\nKL heat map: {result['outputs'][1]}")
    return result


if __name__ == "__main__":
    try:
        main()
    except (UserError, ValueError) as err:  # a mistake in the command or the files: no traceback
        sys.exit(f"error: {err}")
