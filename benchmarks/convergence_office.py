"""TIGER and SASRec on office at their plateaus, under one protocol (the comparison command).

Every model gets the same treatment: the learning-rate grid {1e-2, 5e-3, 3e-3, 1e-3} chosen on
validation NDCG@10 (largest first: the fast settings finish first, so a grid stopped by the clock
keeps the most settings), validation every 2 epochs with early stopping after 5 evaluations without gain
(10 epochs), at most 200 epochs, batch 256, the best checkpoint tested (full ranking). Each model
group is one comparison (``python -m recbole_genrec.compare ... --grid``), so groups run in
parallel, one per core, and are merged into one table with the validation curves:

    OMP_NUM_THREADS=1 python benchmarks/convergence_office.py run SASRec      # one group per process
    OMP_NUM_THREADS=1 python benchmarks/convergence_office.py run TIGER-cpu
    python benchmarks/convergence_office.py report                           # merge what has finished

A group whose grid was stopped continues where it stopped when run again (``compare
--keep_finished``: the finished settings are kept, the stopped one resumes from its last epoch,
the others are trained). A group run in two processes at once uses two cores: they share its grid
(each trains settings the other is not training).

Groups: ``SASRec`` (RecBole's cross-entropy over all items), ``SASRec-BPR`` (one sampled
negative, the TIGER paper's baseline), ``TIGER-cpu`` (``TIGER-cpu.yaml``, 0.3M parameters) and
``TIGER-spec`` (``TIGER.yaml``, 2.1M parameters), both TIGERs with
``benchmarks/configs/tiger_office_converge.yaml`` (residual k-means codes, length-bucketed batches,
bf16 autocast). Writes ``benchmarks/results/convergence_office/<group>/`` per group, and
``benchmarks/results/convergence_office/`` (results.md/json, curves.png: validation NDCG@10
against epochs and against training seconds) plus ``benchmarks/results/convergence_office.md``.
"""

import argparse
import json
import os
import subprocess
import sys

from recbole_genrec.compare import NOT_RUN, setting_label

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join("benchmarks", "results", "convergence_office")
CONVERGE = "benchmarks/configs/tiger_office_converge.yaml"
GROUPS = {
    "SASRec": ["--models", "SASRec"],
    "SASRec-BPR": ["--models", "SASRec-BPR=SASRec", "--model_config", "SASRec-BPR=benchmarks/configs/sasrec_bpr_office.yaml"],
    "TIGER-cpu": ["--models", "TIGER-cpu=TIGER", "--model_config", "TIGER-cpu=recbole_genrec/properties/model/TIGER-cpu.yaml",
                  "--model_config", f"TIGER-cpu={CONVERGE}"],
    "TIGER-spec": ["--models", "TIGER-spec=TIGER", "--model_config", f"TIGER-spec={CONVERGE}"],
}
# identical in every group (the merge refuses groups whose protocol differs)
PROTOCOL = ["--dataset", "office", "--config_files", "properties/dataset/office.yaml",
            "--grid", "learning_rate=0.01,0.005,0.003,0.001", "--epochs", "200",
            "--train_batch_size=256", "--show_progress=False", "--eval_step=2", "--stopping_step=5"]


def compare(args):
    subprocess.run([sys.executable, "-m", "recbole_genrec.compare", *args], cwd=ROOT, check=True)


def run_grid(args):
    """One grid comparison; a stopped one continues (``--keep_finished``: the finished settings kept,
    the one it was stopped in resumed from its last epoch, also when that was the first)."""
    compare(args + ["--keep_finished"])


def grid_runs(group):
    """Every grid entry (one per setting) of a group's results.json, and its rows' chosen runs."""
    with open(os.path.join(ROOT, OUT, group, "results.json")) as f:
        rows = list(json.load(f)["results"].values())
    return [run for row in rows for run in row.get("grid", [])], [row for row in rows if "test_result" in row]


def compute_line(group, runs, chosen):
    """Training time a group's grid has spent (every finished setting) and its chosen run's time.

    Seconds in training (``fit``, validation included) and testing, a resumed run's before its
    interruption included; not the process's wall time, which a resumed run splits.
    """
    runs = [run for run in runs if "error" not in run]
    if not chosen:
        return f"{group}: nothing finished"
    took = chosen[0]["train_seconds"] + chosen[0].get("test_seconds", 0.0)
    return (f"{group}: {len(runs)} setting(s) finished, {sum(r['train_seconds'] for r in runs) / 3600:.1f} h of "
            f"training in all; the chosen run took {took / 60:.0f} min")


def unfinished_settings(runs):
    """The grid settings that did not run (the group's comparison was stopped before them)."""
    return [setting_label(run["setting"]) for run in runs if run.get("error") == NOT_RUN]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("groups", nargs="*", default=[], help=f"with run: some of {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    if args.action == "run":
        unknown = [g for g in args.groups if g not in GROUPS]
        if unknown or not args.groups:
            parser.error(f"run needs groups from {', '.join(GROUPS)}; got {args.groups}")
        for group in args.groups:
            run_grid(GROUPS[group] + PROTOCOL + ["--out", os.path.join(OUT, group)])
        return
    done = [g for g in GROUPS if os.path.isfile(os.path.join(ROOT, OUT, g, "results.json"))]
    if not done:
        sys.exit("error: no group has finished a run yet (run: python benchmarks/convergence_office.py run SASRec)")
    compare(["--merge", *(os.path.join(OUT, g) for g in done), "--out", OUT])
    missing = [g for g in GROUPS if g not in done]
    runs = {g: grid_runs(g) for g in done}
    partial = {g: unfinished_settings(runs[g][0]) for g in done if unfinished_settings(runs[g][0])}
    with open(os.path.join(ROOT, OUT, "results.md")) as f:
        table = f.read().split("\n", 2)[2]  # without the merged file's title
    text = [
        "# Convergence on office: every model tuned the same way (learning-rate grid, early stopping)", "",
        "Generated by `python benchmarks/convergence_office.py report` from the groups run by "
        "`OMP_NUM_THREADS=1 python benchmarks/convergence_office.py run <group>` (one process per group, on a "
        "shared 2-core CPU: wall times are upper bounds). Protocol: `" + " ".join(PROTOCOL) + "`.", "",
        f"Groups run: {', '.join(done)}." + (f" **Not yet run: {', '.join(missing)}.**" if missing else "")
        + "".join(f" **{g}: grid incomplete, {', '.join(settings)} not run; its row is the best of "
                  "the settings that finished.**" for g, settings in partial.items()), "",
        "Time: " + "; ".join(compute_line(g, *runs[g]) for g in done) + ".", "",
        table, "![validation curves](convergence_office/curves.png)", "",
    ]
    with open(os.path.join(ROOT, "benchmarks", "results", "convergence_office.md"), "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
