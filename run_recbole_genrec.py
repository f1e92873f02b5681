"""Train and evaluate any plugin or RecBole model: RecBole's flags, RecBole's output.

    python run_recbole_genrec.py --model=TIGER --dataset=ml-100k
    python run_recbole_genrec.py --model=SASRec --dataset=office \
        --config_files=properties/dataset/office.yaml --epochs=5
"""

import argparse
import sys

from recbole_genrec.quick_start import run_recbole_genrec
from recbole_genrec.errors import UserError

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", "-m", type=str, default="TIGER", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    parser.add_argument("--nproc", type=int, default=1, help="processes (RecBole DDP; gloo on CPU)")
    parser.add_argument("--ip", type=str, default="localhost", help="master address")
    parser.add_argument("--port", type=str, default="5678", help="master port")
    parser.add_argument("--world_size", type=int, default=-1, help="total processes")
    parser.add_argument("--group_offset", type=int, default=0, help="rank offset of this node")
    args, _ = parser.parse_known_args()  # other --key=value pairs are read by Config

    try:
        run_recbole_genrec(
            model=args.model,
            dataset=args.dataset,
            config_file_list=args.config_files.strip().split(" ") if args.config_files else None,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except UserError as err:  # a mistake in the command or the files: no traceback
        sys.exit(f"error: {err}")
