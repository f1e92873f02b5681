"""RQ-VAE recipe candidates on office at the CPU budget, side by side (issue 13, Build 1).

    OMP_NUM_THREADS=1 python benchmarks/tokenizer_recipe.py [--only NAME ...] [--tokenizers 5]
    OMP_NUM_THREADS=1 python benchmarks/tokenizer_recipe.py --tiger NAME ...   # TIGER on those candidates

Each candidate builds office's semantic IDs through the tokenizer command
(``python -m recbole_genrec.tokenizer``, same dataset yaml, same seed, ``rq_epochs`` 50 unless it sets it)
keeping the last ``--tokenizers`` epochs, so the report has per-level usage, collisions before
the extra level and the drift between adjacent kept epochs (share of items whose ID changes in
any token / in the first token). The item embeddings are encoded once and then come from the
cache. Writes ``benchmarks/results/tokenizer_recipe_office.{json,md}``.

``--tiger`` trains TIGER on a candidate's codes at an equal budget (the comparison command with
``mtgrec_office.py``'s TIGER++ row: the CPU preset, one tokenizer, 40 epochs, its protocol, seed 2024,
plus the candidate's overrides) and adds its best validation NDCG@10 to the candidate's row; the
comparison's files go to ``benchmarks/results/tokenizer_recipe_office/<candidate>/``.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import mtgrec_office as mtg
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DATASET_YAML = os.path.join(ROOT, "properties", "dataset", "office.yaml")

# name -> overrides of properties/sid.yaml (``old`` = the recipe before issue 13 = the spec's)
CANDIDATES = {
    "adamw 1e-3 + restart": {"rq_optimizer": "adamw", "rq_lr": 0.001, "dead_code_restart": True},
    "adamw 1e-3 + restart, batch 512": {
        "rq_optimizer": "adamw", "rq_lr": 0.001, "dead_code_restart": True, "rq_batch_size": 512,
    },
    "old: adagrad 1e-3": {"rq_optimizer": "adagrad", "rq_lr": 0.001, "dead_code_restart": False},
    "adagrad 1e-3 + restart": {"rq_optimizer": "adagrad", "rq_lr": 0.001, "dead_code_restart": True},
    "adamw 1e-3": {"rq_optimizer": "adamw", "rq_lr": 0.001, "dead_code_restart": False},
    "adamw 1e-3 + restart until 80%": {
        "rq_optimizer": "adamw", "rq_lr": 0.001, "dead_code_restart": True, "dead_code_restart_until": 0.8,
    },
    "adamw 1e-3 + restart until 80%, batch 512": {
        "rq_optimizer": "adamw", "rq_lr": 0.001, "dead_code_restart": True, "dead_code_restart_until": 0.8,
        "rq_batch_size": 512,
    },
    # the default trained 10x longer: does the drift between kept epochs fall towards the paper's?
    "default, 500 epochs": {
        "rq_optimizer": "adamw", "rq_lr": 0.001, "dead_code_restart": True, "dead_code_restart_until": 0.8,
        "rq_epochs": 500,
    },
}


# The choice and its reason (edited by hand after a run; the table above it is the measurement).
CHOICE = """## Choice (the new default in recbole_genrec/properties/sid.yaml)

**AdamW 1e-3, dead-code restarts during the first 80% of the epochs** (`rq_optimizer: adamw`,
`dead_code_restart: true`, `dead_code_restart_until: 0.8`; batch 2048, lr and everything else unchanged). It
is the only candidate meeting both targets of issue 13: every level uses >= 90% of its codes (248 / 248 /
232) and 4.88% of items collide before the extra level (<= 5%). Restarts for the whole run also fix usage
but re-randomise codes every batch, so the kept epochs share almost nothing (99.7% of IDs and 54% of first
tokens change between adjacent epochs): unusable as MTGRec's "semantically relevant" tokenizers. Stopping
them at 80% brings the drift to 90.7% / 14.6%. Batch 512 has lower drift (87.8% / 7.6%) and lower
reconstruction error but misses the usage target on level 3 by one code (230 of the 231 needed).

How this was chosen: on usage and collisions (the issue's thresholds) and drift first; then checked on
TIGER's validation NDCG@10 at an equal budget (`--tiger`, 40 epochs, seed 2024): the new default **0.0330**
against the old recipe's **0.0231** (test NDCG@10 0.0277 vs 0.0173), so the choice stands on the issue's
criterion too. One seed, and the other five candidates were not trained (about 40 minutes of a core each).
The new default's run repeats `mtgrec_office.py`'s TIGER++ row of seed 2024 (the same command): the two
processes gave identical metrics. The drift of every candidate is far above the paper's 9-14% (any) / < 1% (first)
between adjacent epochs: at 50 epochs (about 100 optimizer steps) the RQ-VAE is far from converged, while the
paper keeps epochs 9,976-10,000 of a 10,000-epoch run. Trained 10x longer (`default, 500 epochs`: 8 minutes
here), the default recipe's drift falls to 60.6% (any) / 0.34% (first token), the paper's first-token drift, and
the reconstruction error from 0.78 to 0.11, but level 3 then uses 210 codes (82%, under the usage target), so the
50-epoch default stands; the longer run is the one that comes closest to MTGRec's premise. The spec's recipe (Adagrad 1e-3, no restarts) stays
available: `--rq_optimizer=adagrad --dead_code_restart=False`. The README main job (TIGER on ml-100k) uses
`sid_method: rkmeans` (properties/model/ml-100k/TIGER.yaml), so this change does not touch it."""


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_candidate(overrides, n_tok, tag):
    from recbole_genrec.tokenizer.__main__ import main

    json_path = os.path.join(RESULTS, f".tokenizer_recipe_{tag}.json")
    png = os.path.join(RESULTS, f"tokenizer_usage_office_recipe_{tag}.png")
    keys = {"sid_method": "rqvae", "sid_num_tokenizers": n_tok, "rq_epochs": 50, "show_progress": False} | overrides
    argv = ["--dataset=office", f"--config_files={DATASET_YAML}", f"--json={json_path}", f"--png={png}",
            *(f"--{k}={v}" for k, v in keys.items())]  # a candidate may set rq_epochs
    start = time.time()
    report = main(argv)
    report["wall_seconds"] = time.time() - start
    report["overrides"] = overrides
    report["command"] = "python -m recbole_genrec.tokenizer " + " ".join(
        a for a in argv if not a.startswith(("--json", "--png"))
    ).replace(ROOT + "/", "")
    os.remove(json_path)
    return report


def run_tiger(name, seed=2024):
    """Best validation NDCG@10 (and the command) of TIGER trained on ``name``'s codes; see the docstring."""
    model, files = mtg.VARIANTS["TIGER++"]
    out = os.path.join("benchmarks", "results", "tokenizer_recipe_office", slug(name))
    argv = ["--models", f"TIGER={model}", *(a for f in files for a in ("--model_config", f"TIGER={f}")),
            *mtg.PROTOCOL, f"--seed={seed}", *(f"--{k}={v}" for k, v in CANDIDATES[name].items()), "--out", out]
    subprocess.run([sys.executable, "-m", "recbole_genrec.compare", *argv], cwd=ROOT, check=True)
    with open(os.path.join(ROOT, out, "results.json")) as f:
        result = json.load(f)["results"]["TIGER"]
    return {"valid_ndcg@10": result["best_valid_result"]["ndcg@10"], "epochs_run": result["epochs_run"],
            "command": "python -m recbole_genrec.compare " + " ".join(argv)}


def row(name, r):
    q = r["quality"]
    used = " / ".join(str(lv["used"]) for lv in q["levels"])
    usage_ok = all(lv["usage"] >= 0.9 for lv in q["levels"])
    changes = q.get("id_change_vs_previous") or []
    any_ = np.mean([c["any"] for c in changes]) if changes else float("nan")
    first = np.mean([c["first"] for c in changes]) if changes else float("nan")
    fit = r["timings_at_build"].get("fit_rqvae", float("nan"))
    tiger = f"{r['tiger']['valid_ndcg@10']:.4f}" if "tiger" in r else "not run"
    return (
        f"| {name} | {used} | {'yes' if usage_ok else 'no'} | {q['collision_rate_before']:.2%} | "
        f"{q['max_group_size']} | {any_:.2%} / {first:.2%} | {r['final_recon_mse']:.4f} | {fit:.0f}s | {tiger} |"
    )


def write(results, n_tok, load):
    load = results.setdefault("_load", list(load))
    with open(os.path.join(RESULTS, "tokenizer_recipe_office.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = [
        "# RQ-VAE recipe on office at the CPU budget (issue 13, Build 1)",
        "",
        "Command: `OMP_NUM_THREADS=1 python benchmarks/tokenizer_recipe.py` (this session ran it in parts with "
        "`--only NAME ...`; one `python -m recbole_genrec.tokenizer` build per candidate, the exact command of each "
        "is in the JSON as `command`).",
        "",
        f"Machine: {platform.machine()}, 1 torch thread, 2 cores shared with other jobs (1-min load "
        f"{load[0]:.1f} at the start of the last part, {load[1]:.1f} at its end), so times are upper bounds. Every candidate: "
        f"office (2420 items), all-MiniLM-L6-v2 embeddings PCA-whitened to 128-d, 3 x 256 EMA codebooks, "
        f"k-means init, MLP 2048-1024-512-256-128, rq_epochs 50, seed 2024, the last {n_tok} epochs kept.",
        "",
        "Used = codes used per level (of 256); >= 90% = every level uses at least 231 codes. Collisions = "
        "(N - #unique 3-level IDs) / N before the extra level. Drift = mean over adjacent kept epochs of the "
        "share of items whose 4-token ID changes in any token / in the first token (paper, Table 5, "
        "Delta = 1: about 9-14% / under 0.4%). TIGER valid NDCG@10 = best validation NDCG@10 of TIGER trained on "
        "the candidate's latest codes at an equal budget (`--tiger`: the CPU preset, 40 epochs, seed 2024; commands "
        "in the JSON as `tiger.command`).",
        "",
        "| recipe | used L1 / L2 / L3 | all >= 90% | collisions before | max group | drift any / first | recon MSE "
        "| fit time | TIGER valid NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(name, results[name]) for name in CANDIDATES if name in results]
    lines += ["", CHOICE, ""]
    path = os.path.join(RESULTS, "tokenizer_recipe_office.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None, help="candidate names (default all)")
    parser.add_argument("--tokenizers", type=int, default=5)
    parser.add_argument("--report_only", action="store_true", help="rewrite the markdown from the JSON")
    parser.add_argument("--tiger", nargs="*", default=[], metavar="NAME",
                        help="train TIGER on these (already built) candidates' codes at an equal budget")
    args = parser.parse_args()
    os.chdir(ROOT)
    load0 = os.getloadavg()[0]
    out = os.path.join(RESULTS, "tokenizer_recipe_office.json")
    results = {}
    if os.path.exists(out):
        with open(out) as f:
            results = json.load(f)
    if args.report_only:
        return write(results, args.tokenizers, results.get("_load", (load0, load0)))
    unknown = [name for name in args.tiger if name not in results]
    if unknown:
        parser.error(f"--tiger: {unknown} not built yet; built: {[n for n in CANDIDATES if n in results]}")
    for name in args.tiger:
        results[name]["tiger"] = run_tiger(name)
        write(results, args.tokenizers, results["_load"])
    if args.tiger:
        return
    for name, overrides in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        results[name] = run_candidate(overrides, args.tokenizers, tag=slug(name))
        write(results, args.tokenizers, (load0, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
