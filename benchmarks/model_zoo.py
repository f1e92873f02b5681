"""RecBole 1.2.1's whole model zoo through ``run_recbole_genrec``: one epoch each on tiny data.

Every model RecBole registers (enumerated from RecBole, ``tests/zoo_cases.py``) is trained one
epoch on the tiny zoo dataset with its family's RecBole protocol, its best checkpoint is
reloaded under torch's safe loading (``saved=True``) and tested. Writes
``benchmarks/results/model_zoo.{json,md}``: model, family, status (pass / fail / excused, with
the reason), seconds, test NDCG@10 (ranking protocols) or AUC (labeled and uni100 protocols).

    python benchmarks/model_zoo.py [--models A,B] [--out benchmarks/results]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import torch  # noqa: E402
import zoo_cases  # noqa: E402


def run_one(model, family, data_path, workdir):
    row = {"model": model, "family": family}
    if zoo_cases.excuse_holds(model):
        return dict(row, status="excused", reason=zoo_cases.EXCUSED[model][0])
    os.makedirs(workdir)
    os.chdir(workdir)  # RecBole writes ./log/
    try:
        result, seconds = zoo_cases.run_case(model, family, data_path, workdir)
        unsafe = sorted(
            {g for path in zoo_cases.checkpoint_files(workdir)
             for g in torch.serialization.get_unsafe_globals_in_checkpoint(path)}
        )
    except Exception as err:  # a failing model is a row of the table, not the end of the run
        traceback.print_exc()
        return dict(row, status="fail", reason=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    metric, value = zoo_cases.headline_metric(result)
    return dict(
        row,
        status="pass" if not unsafe else "fail",
        reason="" if not unsafe else f"unsafe globals in checkpoint: {unsafe}",
        seconds=round(seconds, 2),
        metric=metric,
        value=round(value, 4) if value is not None else None,
    )


def write_markdown(path, payload):
    rows = payload["rows"]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "excused")}
    lines = [
        "# RecBole 1.2.1 model zoo through `run_recbole_genrec`",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"{len(rows)} models (every model RecBole 1.2.1 registers): **{counts['pass']} pass, "
        f"{counts['fail']} fail, {counts['excused']} excused**. One epoch each on the tiny zoo "
        "dataset (`tests/zoo_cases.py`: 40 users, 130 items, about 520 interactions, user/item "
        "features, a knowledge graph, entity vectors), the best checkpoint reloaded with "
        "`weights_only=True` and `torch.serialization.get_unsafe_globals_in_checkpoint` empty. "
        "The metric is the test metric of the family's RecBole protocol: NDCG@10 (full ranking: "
        "general, sequential, knowledge-aware), AUC (labeled: context-aware, exlib; uni100: DIN, "
        "DIEN). One epoch on tiny data: the numbers show that a model runs end to end, not how "
        "good it is.",
        "",
        f"Stack: {payload['stack']}",
        "",
        "| model | family | status | seconds | NDCG@10 | AUC | note |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        ndcg = r["value"] if r.get("metric") == "ndcg@10" else ""
        auc = r["value"] if r.get("metric") == "auc" else ""
        lines.append(
            f"| {r['model']} | {r['family']} | {r['status']} | {r.get('seconds', '')} | "
            f"{ndcg} | {auc} | {r.get('reason', '')} |"
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args()
    command = "python benchmarks/model_zoo.py" + (f" --models {args.models}" if args.models else "")
    out = os.path.abspath(args.out)
    sys.argv = [sys.argv[0]]  # RecBole's Config reads --key=value from sys.argv
    wanted = set(args.models.split(",")) if args.models else None
    zoo = [(m, f) for m, f in zoo_cases.recbole_models() if wanted is None or m in wanted]

    import numpy
    import recbole
    import scipy

    stack = (
        f"Python {platform.python_version()}, RecBole {recbole.__version__}, torch {torch.__version__}, "
        f"numpy {numpy.__version__}, scipy {scipy.__version__}, "
        "optional dependencies importable: "
        + ", ".join(
            f"{m} {'yes' if zoo_cases.module_importable(m) else 'no'}"
            for m in ("lightgbm", "xgboost", "dgl", "torch_scatter")
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_path = zoo_cases.write_zoo_dataset(os.path.join(tmp, "data"))
        rows = []
        for model, family in zoo:
            row = run_one(model, family, data_path, os.path.join(tmp, model))
            print(row, flush=True)
            rows.append(row)
        os.chdir(ROOT)
    payload = {"command": command, "stack": stack, "rows": rows}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model_zoo.json"), "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
    write_markdown(os.path.join(out, "model_zoo.md"), payload)
    print(f"wrote {os.path.join(out, 'model_zoo.md')}")


if __name__ == "__main__":
    main()
