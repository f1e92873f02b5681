"""Why TIGER trails SASRec on office (issue 12, Build 4): one change at a time to the converged CPU-preset TIGER.

Each ablation is the ``TIGER-cpu`` group of ``convergence_office.py`` with one change, under the same
protocol (early stopping, batch 256, bf16 autocast, length buckets, the best checkpoint tested),
trained at the learning rate that group's grid chose on validation. The learning rate is given as a
one-setting grid, so a run stopped part-way resumes from its last epoch when run again (``compare
--keep_finished``)::

    OMP_NUM_THREADS=1 python benchmarks/tiger_ablations_office.py run published-codes   # one per process
    python benchmarks/tiger_ablations_office.py report

Ablations (what each one asks):

* ``published-codes``: the APAO authors' residual k-means IDs for office
  (``../shared/data/office/office.sid-rqkmeans.json``, 4 levels, collisions unresolved) instead of
  ours: are our codes the problem?
* ``rqvae-codes``: our RQ-VAE tokenizer (``sid_method: rqvae``) instead of residual k-means.
* ``user-tokens``: 2,000 hashed user tokens (the TIGER paper) instead of one constant BOS token.

Capacity is the convergence comparison's own ``TIGER-spec`` group (``TIGER.yaml``'s 2.1M parameters
against the CPU preset's 0.3M, tuned by the same grid); the report lists its row when it has run.

Where the gap comes from (spec memgen.md): the tuned SASRec and TIGER-cpu, from their best
checkpoints, through the package's predictions and memorization/generalization commands::

    python benchmarks/tiger_ablations_office.py memgen --checkpoint SASRec=saved/...pth --checkpoint TIGER=saved/...pth

Writes ``benchmarks/results/tiger_ablations_office/<ablation>/`` (the comparison's files) and
``benchmarks/results/tiger_ablations_office.md`` (+ ``.json``): each ablation beside the
baseline (the TIGER-cpu grid's run at the same learning rate) and SASRec's tuned row.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

import convergence_office as conv
from recbole_genrec.compare import NOT_RUN

ROOT = conv.ROOT
OUT = os.path.join("benchmarks", "results", "tiger_ablations_office")
CPU = "recbole_genrec/properties/model/TIGER-cpu.yaml"
ABLATIONS = {  # name: (the one change as overrides, what it tests); the architecture is the CPU preset
    "published-codes": (["--sid_file=office.sid-rqkmeans.json"], "APAO authors' office IDs"),
    "rqvae-codes": (["--sid_method=rqvae"], "RQ-VAE codes"),
    "user-tokens": (["--n_user_tokens=2000"], "2,000 user tokens"),
}
MEMGEN = os.path.join(OUT, "memgen")  # the analysis of the two tuned models' predictions
# the convergence protocol without its grid (the learning rate is fixed to the TIGER-cpu group's choice)
PROTOCOL = [a for i, a in enumerate(conv.PROTOCOL) if a != "--grid" and conv.PROTOCOL[i - 1] != "--grid"]


def load_row(out, name):
    """Row ``name`` of the comparison in ``out/name/`` (a convergence group, an ablation), or None."""
    path = os.path.join(ROOT, out, name, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)["results"][name]


def chosen_learning_rate():
    """The TIGER-cpu grid's choice on validation; an error while its grid is incomplete."""
    row = load_row(conv.OUT, "TIGER-cpu")
    missing = [run["setting"] for run in row["grid"] if run.get("error") == NOT_RUN]
    if missing:
        sys.exit(f"error: the TIGER-cpu grid has not finished ({missing} not run): run "
                 "`python benchmarks/convergence_office.py run TIGER-cpu` first, or give --learning_rate.")
    return row["chosen"]["learning_rate"]


def compare_args(name, learning_rate):
    change, _ = ABLATIONS[name]
    return (["--models", f"{name}=TIGER"] + [a for f in (CPU, conv.CONVERGE) for a in ("--model_config", f"{name}={f}")]
            + PROTOCOL + ["--grid", f"learning_rate={learning_rate}"] + change + ["--out", os.path.join(OUT, name)])


def baseline_run(learning_rate):
    """The TIGER-cpu grid's run at ``learning_rate`` (the ablations' baseline)."""
    runs = [r for r in load_row(conv.OUT, "TIGER-cpu")["grid"] if r["setting"]["learning_rate"] == learning_rate]
    return runs[0] if runs and "error" not in runs[0] else None


def summary_rows():
    """``[(row name, what changed, learning rate, result)]``: the baseline, each finished ablation, the
    tuned spec-size TIGER (capacity) and SASRec, the last two when their convergence groups have run."""
    rows = []
    for name, (_, what) in ABLATIONS.items():
        row = load_row(OUT, name)
        if row and "error" not in row:
            rows.append((name, what, row["chosen"]["learning_rate"], row))
    for lr in sorted({lr for _, _, lr, _ in rows}):
        base = baseline_run(lr)
        if base:
            rows.insert(0, ("TIGER-cpu", "baseline (convergence grid)", lr, base))
    for group, what in (("TIGER-spec", "spec-size model, 2.1M parameters (convergence grid, tuned)"),
                        ("SASRec", "tuned SASRec (convergence grid)")):
        row = load_row(conv.OUT, group)
        if row and "chosen" in row:
            rows.append((group, what, row["chosen"]["learning_rate"], row))
    return rows


def memgen(checkpoints):
    """Predictions of each ``(label, best checkpoint)`` (SASRec first), then the memorization/generalization
    analysis of the pair into ``MEMGEN``; the commands are kept in ``MEMGEN/commands.txt``."""
    preds = [os.path.join("saved", "tiger_ablations_office", f"{label}.npz") for label, _ in checkpoints]
    commands = [["python", "-m", "recbole_genrec.analysis.predictions", path, "--out", out]
                for (_, path), out in zip(checkpoints, preds)]
    commands.append(["python", "-m", "recbole_genrec.analysis.memgen", "--dataset=office",
                     "--config_files=properties/dataset/office.yaml",
                     "--predictions", *preds, f"--out={MEMGEN}"])
    for cmd in commands:
        print("$", shlex.join(cmd), flush=True)
        subprocess.run([sys.executable, *cmd[1:]], check=True, cwd=ROOT)
    with open(os.path.join(ROOT, MEMGEN, "commands.txt"), "w") as f:
        f.write("".join(shlex.join(cmd) + "\n" for cmd in commands))


def memgen_markdown():
    """The report's section on the two tuned models by capability (empty before ``memgen`` has run)."""
    path = os.path.join(ROOT, MEMGEN, "summary.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        summary = json.load(f)
    with open(os.path.join(ROOT, MEMGEN, "commands.txt")) as f:
        commands = f.read().strip()
    a, b = summary["models"]
    lines = ["", f"## Where the gap is: {a} vs {b} by the capability each test instance needs (spec memgen.md)", "",
             f"Both tuned models from their best checkpoints; {summary['n_instances']} test instances, labels from the "
             f"train split (max hop {summary['max_hop']}). Full report: `{MEMGEN}/report.md`.", "",
             f"| category | share | {a} NDCG@10 | {b} NDCG@10 | Δ ({b} − {a}) | share × Δ |", "|---|---|---|---|---|---|"]
    for row in summary["categories"]:
        if row["category"] in ("memorization", "generalization", "uncategorized"):
            delta = row[f"{b} NDCG@10"] - row[f"{a} NDCG@10"]
            lines.append(f"| {row['category']} | {row['share']:.1%} | {row[f'{a} NDCG@10']:.4f} | {row[f'{b} NDCG@10']:.4f} "
                         f"| {delta:+.4f} | {row['share'] * delta:+.4f} |")
    test = summary["ensemble"]["test"]
    lines += ["", "Their per-instance ensembles (chosen on validation): "
              + ", ".join(f"{name} {test[name]['ndcg@10']:.4f}" for name in test) + " (test NDCG@10).",
              "", "Commands:", "", "```", commands, "```"]
    return lines


def report_markdown(rows):
    base = {lr: r["test_result"]["ndcg@10"] for name, _, lr, r in rows if name == "TIGER-cpu"}
    lines = ["# Why TIGER trails SASRec on office: one change at a time", "",
             "Generated by `python benchmarks/tiger_ablations_office.py report` from `OMP_NUM_THREADS=1 python "
             "benchmarks/tiger_ablations_office.py run <ablation>`. Protocol (every row): `" + " ".join(PROTOCOL)
             + "`, the learning rate fixed to the TIGER-cpu grid's choice on validation.", "",
             "| row | change | lr | best valid NDCG@10 | test Recall@10 | test NDCG@10 | Δ NDCG@10 vs baseline | epochs | train h |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, what, lr, r in rows:
        test = r["test_result"]
        delta = f"{test['ndcg@10'] - base[lr]:+.4f}" if lr in base and name in ABLATIONS else "—"
        lines.append(f"| {name} | {what} | {lr} | {r['best_valid_score']:.4f} | {test['recall@10']:.4f} | "
                     f"{test['ndcg@10']:.4f} | {delta} | {r.get('epochs_run', '—')} | {r['train_seconds'] / 3600:.2f} |")
    missing = [a for a in ABLATIONS if a not in {name for name, *_ in rows}]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    return "\n".join(lines + memgen_markdown() + [""])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "memgen", "report"))
    parser.add_argument("ablations", nargs="*", default=[], help=f"with run: some of {', '.join(ABLATIONS)}")
    parser.add_argument("--learning_rate", default=None, help="with run: instead of the TIGER-cpu grid's choice")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH",
                        help="with memgen (twice, SASRec first): a tuned model's best checkpoint")
    args = parser.parse_args(argv)
    if args.action == "memgen":
        checkpoints = [tuple(c.split("=", 1)) for c in args.checkpoint]
        if len(checkpoints) != 2 or any(len(c) != 2 or not os.path.isfile(c[1]) for c in checkpoints):
            parser.error(f"memgen needs two --checkpoint LABEL=PATH of existing files; got {args.checkpoint}")
        memgen(checkpoints)
        return
    if args.action == "run":
        unknown = [a for a in args.ablations if a not in ABLATIONS]
        if unknown or not args.ablations:
            parser.error(f"run needs ablations from {', '.join(ABLATIONS)}; got {args.ablations}")
        lr = args.learning_rate or chosen_learning_rate()
        for name in args.ablations:
            conv.run_grid(compare_args(name, lr))
        return
    rows = summary_rows()
    text = report_markdown(rows)
    with open(os.path.join(ROOT, OUT + ".md"), "w") as f:
        f.write(text)
    with open(os.path.join(ROOT, OUT + ".json"), "w") as f:
        json.dump([{"row": n, "change": w, "learning_rate": lr, "result": r} for n, w, lr, r in rows], f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
