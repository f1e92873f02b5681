"""Build a dataset's semantic IDs and print their quality.

    python -m recbole_genrec.tokenizer --dataset=office --config_files=properties/dataset/office.yaml
    python -m recbole_genrec.tokenizer --dataset=ml-100k --sid_method=rkmeans
    python -m recbole_genrec.tokenizer --dataset=office --config_files=properties/dataset/office.yaml \
        --sid_file=../shared/data/office/office.sid-rqkmeans.json

Every ``--key=value`` is a config key (``recbole_genrec/properties/sid.yaml``). ``--model``
(default TIGER) picks the model yaml layered under the command line. Besides the report
on stdout it writes a code-usage PNG (``--png``, default next to the cached codes) and,
with ``--json=PATH``, the report as JSON.
"""

import argparse
import json
import os
import sys
import time


def tokenizer_report(dataset):
    """JSON-able report of a ``SemanticIDDataset``'s semantic IDs (quality, timings, source)."""
    info = dataset.sid_info
    meta = info.get("meta", {})
    return {
        "dataset": dataset.dataset_name,
        "n_items": dataset.item_num - 1,
        "method": meta.get("method", "sid_file" if "sid_file" in meta else None),
        "source": info["source"],
        "num_tokenizers": int(dataset.item_sids.shape[0]),
        "codebook_sizes": list(dataset.sid_codebook_sizes),
        "timings_this_run": info["timings"],
        "timings_at_build": meta.get("build_timings", info["timings"]),
        "n_train_items": meta.get("n_train_items"),
        "text_fields": meta.get("text_fields"),
        "n_text_fallback": meta.get("n_text_fallback"),
        "final_loss": (meta.get("history") or {}).get("loss", [None])[-1],
        "final_recon_mse": (meta.get("history") or {}).get("recon_mse", [None])[-1],
        "quality": dataset.sid_quality,
    }


def format_report(report):
    from recbole_genrec.tokenizer.quality import format_quality

    lines = [
        format_quality(report["quality"], f"[{report['dataset']}] semantic IDs ({report['method']}, {report['source']})"),
        f"  codebook sizes {report['codebook_sizes']}, tokenizers: {report['num_tokenizers']}",
    ]
    if report.get("final_recon_mse") is not None:
        lines.append(f"  RQ-VAE final loss {report['final_loss']:.4f}, reconstruction MSE {report['final_recon_mse']:.4f}")
    changes = report["quality"].get("id_change_vs_previous")
    if changes:
        lines.append(
            "  ID change between consecutive tokenizers (first / any): "
            + ", ".join(f"{c['first']:.2%}/{c['any']:.2%}" for c in changes)
        )
    for name, key in (("this run", "timings_this_run"), ("at build", "timings_at_build")):
        stages = ", ".join(f"{stage} {sec:.2f}s" for stage, sec in report[key].items())
        lines.append(f"  time per stage ({name}): {stages}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_genrec.tokenizer", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--model", "-m", default="TIGER", help="model whose yaml defaults apply (default TIGER)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files")
    parser.add_argument("--png", default=None, help="code-usage PNG path")
    parser.add_argument("--json", default=None, help="write the report as JSON here")
    args, rest = parser.parse_known_args(argv)

    from recbole.utils import init_logger, init_seed

    from recbole_genrec.config import Config
    from recbole_genrec.data.dataset import SemanticIDDataset, sid_cache_dir
    from recbole_genrec.errors import UserError
    from recbole_genrec.tokenizer.quality import plot_code_usage

    try:
        files = args.config_files.strip().split(" ") if args.config_files else None
        config = Config(model=args.model, dataset=args.dataset, config_file_list=files, argv=rest)
        init_seed(config["seed"], config["reproducibility"])
        init_logger(config)
        start = time.time()
        dataset = SemanticIDDataset(config)
    except UserError as err:  # a mistake in the command, config or data: no traceback
        sys.exit(f"error: {err}")
    report = tokenizer_report(dataset)
    report["total_seconds"] = time.time() - start
    png = args.png or os.path.join(sid_cache_dir(config), f"code-usage-{report['method']}.png")
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    title = f"{args.dataset}: {report['method']} code usage ({report['n_items']} items)"
    plot_code_usage(dataset.item_sid[1:].numpy(), dataset.sid_codebook_sizes, png, title=title)
    report["png"] = png
    print(format_report(report))
    print(f"  total {report['total_seconds']:.2f}s; code-usage plot: {png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
