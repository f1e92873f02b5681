"""TIGER vs TIGER_APAO (pointwise, pairwise) on Amazon Office: same split, codes, budget, seeds.

    OMP_NUM_THREADS=1 python benchmarks/apao_office.py train --seeds 2024,2025,2026 --epochs 10 --neg_k 10
    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/apao_office.py cost --steps 12
    python benchmarks/apao_office.py report

* Data: ``../shared/data/office`` via ``properties/dataset/office.yaml`` (the APAO paper's
  leave-one-out split); codes fixed by ``--sid_file=../shared/data/office/office.sid-rqkmeans.json``
  (the APAO code's rq-kmeans IDs; the plugin appends a collision level to the 5 colliding
  items, so IDs have 4 + 1 levels), so no encoder/tokenizer time is spent.
* "TIGER" is ``TIGER_APAO`` with ``apao_loss: none``, which is TIGER bit for bit
  (tests/test_apao.py) and also records the prefix-survival rate at test.
* Budget: TIGER's CPU preset (2+2 layers, d_model 64, 2 heads x 32, d_ff 256), the same fixed
  number of epochs for every variant, batch 256, AdamW lr 5e-3 (TIGER.yaml), cosine with
  a tenth of the steps as warm-up, length-bucketed batches (``--length_bucket_batches``, 50:
  same examples, ~2x faster, benchmarks/results/length_bucketing_office.md), validation (beam 20)
  every ``--eval_step`` epochs, best valid NDCG@10 reloaded for test.
  APAO keys at their code defaults (beta 0.1, tau_p 1, eta 0, K 100, kappa scaling).
* Test: full ranking through RecBole, beam 20, trie-constrained; Recall/NDCG@10/20.
* ``cost``: seconds per training step (forward + backward + AdamW step) of the three variants
  measured side by side in one process on the same batches, interleaved, CPU time.

Writes ``benchmarks/results/apao_office_runs.jsonl`` (one line per run), ``apao_office_cost.json``
and ``apao_office.md`` (the table, mean ± std over seeds).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
from recbole.utils import init_logger, init_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recbole_genrec.config import Config  # noqa: E402
from recbole_genrec.model.tiger_apao import TIGER_APAO  # noqa: E402
from recbole_genrec.quick_start import prepare_training  # noqa: E402
from recbole_genrec.utils import create_dataset, data_preparation  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")
RUNS = os.path.join(RESULTS, "apao_office_runs.jsonl")
COST = os.path.join(RESULTS, "apao_office_cost.json")
REPORT = os.path.join(RESULTS, "apao_office.md")
VARIANTS = ("none", "pointwise", "pairwise")
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
PRESET = {"n_layers": 2, "d_model": 64, "n_heads": 2, "d_kv": 32, "d_ff": 256}


def make_config(variant, seed, epochs, batch, extra=None, buckets=50, eval_step=2):
    keys = {
        **PRESET,
        "apao_loss": variant,
        "sid_file": os.path.join(ROOT, "..", "shared", "data", "office", "office.sid-rqkmeans.json"),
        "data_path": os.path.join(ROOT, "..", "shared", "data"),
        "checkpoint_dir": os.path.join(ROOT, "saved", f"apao_bench_{variant}_{seed}"),  # parallel runs never share a file
        "seed": seed,
        "reproducibility": True,
        "epochs": epochs,
        "train_batch_size": batch,
        "eval_batch_size": 512,
        "beam_size": 20,
        "valid_beam_size": 20,
        "decoding": "constrained",
        "metrics": ["Recall", "NDCG"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "stopping_step": 1000,
        "eval_step": eval_step,
        "length_bucket_batches": buckets,
        "show_progress": False,
        "log_wandb": False,
        "state": "INFO",
    }
    keys.update(extra or {})
    return Config(model=TIGER_APAO, dataset="office", config_file_list=[os.path.join(ROOT, "properties", "dataset", "office.yaml")], config_dict=keys, argv=[])


def train_one(variant, seed, args, dataset):
    epochs, batch, neg_k = args.epochs, args.batch, args.neg_k
    config = make_config(variant, seed, epochs, batch, {"warmup_ratio": 0.1, "apao_neg_k": neg_k},  # a tenth of the steps
                         buckets=args.length_bucket_batches, eval_step=args.eval_step)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    train, valid, test, model, trainer = prepare_training(config, dataset)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    # one epoch: nothing to select, so no validation pass (the CPU goes to training)
    _, best_valid = trainer.fit(train, valid if epochs > 1 else None, saved=True)
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    result = trainer.evaluate(test, load_best_model=epochs > 1)  # one epoch: the final model is the one to test
    return {
        "variant": variant, "seed": seed, "epochs": epochs, "batch": batch,
        "test": {k: float(v) for k, v in result.items()},
        "best_valid": {k: float(v) for k, v in (best_valid or {}).items()}, "neg_k": neg_k,
        "length_bucket_batches": args.length_bucket_batches, "eval_step": args.eval_step,
        "train_cpu_s": train_cpu, "train_wall_s": train_wall,
        "apao_history": trainer.apao_history, "steps_per_epoch": len(train),
        "n_prefixes": model.sid.n_prefixes.tolist(), "n_levels": model.n_levels,
    }


def cmd_train(args):
    os.makedirs(RESULTS, exist_ok=True)
    torch.set_num_threads(1)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants.split(","):
            # RecBole's Dataset.build() mutates the dataset: one fresh dataset per run
            dataset = create_dataset(make_config("none", seed, args.epochs, args.batch))
            t0 = time.perf_counter()
            row = train_one(variant, seed, args, dataset)
            row["command"] = " ".join(sys.argv)
            with open(RUNS, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[apao] {variant} seed {seed}: {row['test']} ({time.perf_counter() - t0:.0f}s wall)", flush=True)


def cmd_cost(args):
    """Seconds per training step, the three variants on the same batches, interleaved."""
    torch.set_num_threads(1)
    config = make_config("none", 2024, 1, args.batch)
    dataset = create_dataset(config)
    init_seed(2024, True)
    train, _, _ = data_preparation(config, dataset)
    batches = [b for _, b in zip(range(args.steps + 2), train)]
    models, opts = {}, {}
    for variant in VARIANTS:
        init_seed(2024, True)
        models[variant] = TIGER_APAO(make_config(variant, 2024, 1, args.batch, {"apao_neg_k": args.neg_k}), train._dataset)
        models[variant].train()
        opts[variant] = torch.optim.AdamW(models[variant].parameters(), lr=5e-4)
    times = {v: [] for v in VARIANTS}
    for i, batch in enumerate(batches):
        for variant in VARIANTS:
            model, opt = models[variant], opts[variant]
            t0 = time.process_time()
            opt.zero_grad()
            model.calculate_loss(batch).backward()
            opt.step()
            if i >= 2:  # two warm-up steps
                times[variant].append(time.process_time() - t0)
    med = {v: statistics.median(t) for v, t in times.items()}
    out = {
        "batch": args.batch, "steps": args.steps, "neg_k": args.neg_k, "threads": 1, "clock": "process CPU time",
        "median_seconds_per_step": med,
        "ratio_to_tiger": {v: med[v] / med["none"] for v in VARIANTS},
        "command": " ".join(sys.argv),
    }
    previous = json.load(open(COST)) if os.path.isfile(COST) else {}
    previous = previous if isinstance(previous, dict) and "by_neg_k" in previous else {"by_neg_k": {}}
    previous["by_neg_k"][str(args.neg_k)] = out
    with open(COST, "w") as f:
        json.dump(previous, f, indent=2)
    print(json.dumps(out, indent=2))


def _ms(values):
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "—"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def cmd_report(args):
    rows = [json.loads(line) for line in open(RUNS)]
    by_variant = {v: rs for v in VARIANTS if (rs := [r for r in rows if r["variant"] == v])}  # those with runs
    names = {"none": "TIGER (CE)", "pointwise": "TIGER_APAO pointwise", "pairwise": "TIGER_APAO pairwise"}
    L = rows[0]["n_levels"]
    lines = [
        "# TIGER vs TIGER_APAO on office (mean ± std over seeds)", "",
        f"Seeds: {sorted({r['seed'] for r in rows})}; epochs {rows[0]['epochs']}, batch {rows[0]['batch']}, "
        f"{rows[0]['steps_per_epoch']} steps/epoch, length_bucket_batches {rows[0].get('length_bucket_batches', 0)}, "
        f"validation every {rows[0].get('eval_step', 1)} epochs; codes = APAO rq-kmeans ({L} levels incl. the collision level; "
        f"N_t = {rows[0]['n_prefixes']}). Test: full ranking, beam 20, trie-constrained; "
        + ("best valid NDCG@10 epoch." if rows[0]["epochs"] > 1 else "the final model (one epoch: no validation pass).")
        + f" Pairwise K = {sorted({r.get('neg_k') for r in rows if r['variant'] == 'pairwise'}) or '—'}.", "",
        "| model | runs | " + " | ".join(m.replace("recall", "Recall").replace("ndcg", "NDCG") for m in METRICS)
        + " | " + " | ".join(f"survival t={t}" for t in range(1, L + 1)) + " | train CPU s |",
        "|" + "---|" * (3 + len(METRICS) + L),
    ]
    for variant, rs in by_variant.items():
        cells = [_ms([r["test"][m] for r in rs]) for m in METRICS]
        cells += [_ms([r["test"][f"prefix_survival@{t}"] for r in rs]) for t in range(1, L + 1)]
        cells.append(f"{statistics.mean(r['train_cpu_s'] for r in rs):.0f}")
        lines.append(f"| {names[variant]} | {len(rs)} | " + " | ".join(cells) + " |")
    ce = {r["seed"]: r["test"] for r in by_variant.get("none", [])}
    if ce:
        paired_by = {v: [r for r in by_variant.get(v, []) if r["seed"] in ce] for v in ("pointwise", "pairwise")}
        lines += ["", "Relative change of the mean vs TIGER (CE) on the seeds both have:", ""]
        for variant, paired in paired_by.items():
            if paired:
                lines.append(f"- {names[variant]}: " + ", ".join(
                    f"{m} {100 * (sum(r['test'][m] for r in paired) / sum(ce[r['seed']][m] for r in paired) - 1):+.1f}%"
                    for m in METRICS))
        lines += ["", "Paired by seed (a seed fixes the initialisation and the batch order, so the per-seed "
                  "difference removes the seed's luck): mean ± std over seeds of variant − TIGER (CE):", ""]
        for variant, paired in paired_by.items():
            if paired:
                lines.append(f"- {names[variant]} ({len(paired)} seed{'s' if len(paired) > 1 else ''}): " + ", ".join(
                    f"{m} {_ms([r['test'][m] - ce[r['seed']][m] for r in paired])}" for m in METRICS))
    lines += ["", "Per-seed test metrics:", "", "| model | seed | " + " | ".join(METRICS) + " | best epoch (valid NDCG@10) |", "|" + "---|" * (3 + len(METRICS))]
    for r in sorted(rows, key=lambda r: (VARIANTS.index(r["variant"]), r["seed"])):
        lines.append(f"| {names[r['variant']]} | {r['seed']} | " + " | ".join(f"{r['test'][m]:.4f}" for m in METRICS) + f" | {r['best_valid'].get('ndcg@10', float('nan')):.4f} |")
    if by_variant.keys() - {"none"}:
        lines += ["", "Last-epoch APAO diagnostics (seed-mean): prefix losses l_t, weights w_t, pairwise AUC:", ""]
        for variant in ("pointwise", "pairwise"):
            if rs := by_variant.get(variant):
                last = [r["apao_history"][-1] for r in rs]
                mean = lambda key: [round(statistics.mean(h[key][t] for h in last), 4) for t in range(L)]  # noqa: E731
                extra = f", AUC {mean('auc')}, MRR {mean('mrr')}" if "auc" in last[0] else ""
                lines.append(f"- {names[variant]}: l_t {mean('loss')}, w_t {mean('weight')}{extra}")
    if os.path.isfile(COST):
        for k, cost in sorted(json.load(open(COST))["by_neg_k"].items(), key=lambda kv: -int(kv[0])):
            med, ratio = cost["median_seconds_per_step"], cost["ratio_to_tiger"]
            lines += ["", f"Training cost per step (batch {cost['batch']}, pairwise K = {k}, 1 thread, median of "
                      f"{cost['steps']} interleaved steps on the same batches, {cost['clock']}):", "",
                      "| model | s/step | ratio to TIGER |", "|---|---|---|"]
            for v in VARIANTS:
                lines.append(f"| {names[v]} | {med[v]:.3f} | {ratio[v]:.2f}× |")
            lines += ["", "```", "nice -n 5 env OMP_NUM_THREADS=1 python " + cost["command"], "```"]
    lines += ["", "Commands (one process per seed, run side by side):", "", "```",
              *sorted({"OMP_NUM_THREADS=1 python " + r["command"] for r in rows}), "python benchmarks/apao_office.py report", "```", ""]
    with open(REPORT, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("--seeds", default="2024,2025,2026")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--neg_k", type=int, default=100, help="apao_neg_k of the pairwise variant")
    p.add_argument("--length_bucket_batches", type=int, default=50, help="0 = RecBole's plain shuffle")
    p.add_argument("--eval_step", type=int, default=2, help="validate every this many epochs")
    p = sub.add_parser("cost")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--neg_k", type=int, default=100)
    p.add_argument("--batch", type=int, default=256)
    sub.add_parser("report")
    args = parser.parse_args()
    {"train": cmd_train, "cost": cmd_cost, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
