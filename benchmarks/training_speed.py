"""TIGER training speed on office batches: transformers' T5 in float32 (the step before model/t5.py)
vs our T5, in float32 and under bfloat16 autocast, side by side in one process, one thread.

1. ``speed``: for the CPU preset (properties/model/TIGER-cpu.yaml) and the spec-size TIGER
   (TIGER.yaml), the same ``--batches`` office training batches (batch 256, the package's
   loader via ``prepare_training``) go through one optimizer step (loss, backward, grad-norm
   clip, AdamW) of every variant in turn, ``--repeats`` times interleaved; samples/s = median.
   ``hf_*`` is ``transformers.T5ForConditionalGeneration`` holding the model's own weights
   (same names), its loss the one TIGER computed before (HF's label cross-entropy).
2. ``profile``: ``torch.profiler`` over two steps of each variant; self CPU time by operator
   family (where the time goes).
3. ``quality``: ``--seeds`` x {float32, bf16 autocast} runs of the package's trainer
   (``trainer.fit``, RecBole's ``enable_amp``) for ``--epochs`` epochs of the CPU preset; mean
   training loss of the last epoch and validation NDCG@10 (beam 20, RecBole's evaluator).

    python benchmarks/training_speed.py            # all three -> benchmarks/results/training_speed.{json,md}
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recbole_genrec.config import Config  # noqa: E402
from recbole_genrec.quick_start import prepare_training  # noqa: E402
from recbole_genrec.utils import create_dataset  # noqa: E402

OFFICE = os.path.join(ROOT, "properties", "dataset", "office.yaml")
CPU_PRESET = os.path.join(ROOT, "recbole_genrec", "properties", "model", "TIGER-cpu.yaml")
OUT = os.path.join(ROOT, "benchmarks", "results", "training_speed")
SIZES = {"cpu_preset": [CPU_PRESET], "spec_size": []}


def make_config(size, seed, **keys):
    base = {
        "sid_file": os.path.join(ROOT, "..", "shared", "data", "office", "office.sid-rqkmeans.json"),
        "data_path": os.path.join(ROOT, "..", "shared", "data"),
        "checkpoint_dir": os.path.join(ROOT, "saved", "training_speed"),
        "train_batch_size": 256, "seed": seed, "reproducibility": True, "show_progress": False,
        "log_wandb": False, "state": "WARNING",
    }
    return Config(model="TIGER", dataset="office", config_file_list=[OFFICE, *SIZES[size]], config_dict={**base, **keys})


def hf_twin(model):
    """transformers' T5 holding ``model.t5``'s weights: the T5 TIGER ran on before model/t5.py."""
    from transformers import T5Config, T5ForConditionalGeneration

    hf = T5ForConditionalGeneration(T5Config(**vars(model.t5.dims), pad_token_id=0, decoder_start_token_id=0))
    hf.load_state_dict(model.t5.state_dict())
    return hf.train()


def hf_loss(hf, model, batch):
    """TIGER's loss as computed before: HF's token cross-entropy over the L+1 labels."""
    ids, mask = model._interaction_inputs(batch)
    return hf(input_ids=ids, attention_mask=mask, labels=model.target_labels(batch[model.POS_ITEM_ID])).loss


def step_fns(model, trainer):
    hf = hf_twin(model)
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=trainer.learning_rate, weight_decay=trainer.weight_decay)
    model.train()

    def step(params, opt, loss_fn, amp):
        def run(batch):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return loss.detach()

        return run

    ours = list(model.parameters())
    return {
        "hf_fp32": step(list(hf.parameters()), hf_opt, lambda b: hf_loss(hf, model, b), False),
        "hf_bf16": step(list(hf.parameters()), hf_opt, lambda b: hf_loss(hf, model, b), True),
        "ours_fp32": step(ours, trainer.optimizer, model.calculate_loss, False),
        "ours_bf16": step(ours, trainer.optimizer, model.calculate_loss, True),
    }


def family(name):
    n = name.lower()
    if n in ("aten::random_", "aten::ge"):  # T5Dropout's 16-bit mask
        return "dropout"
    for key, words in (
        ("matmul (linear, bmm)", ("addmm", "mm", "matmul", "bmm", "linear")),
        ("attention (sdpa, softmax)", ("attention", "softmax", "sdpa", "flash")),
        ("norm (pow, mean, rsqrt)", ("pow", "mean", "rsqrt", "norm")),
        ("embedding / cross-entropy", ("embedding", "nll", "cross_entropy", "log_softmax", "gather", "index")),
        ("optimizer (AdamW, clip)", ("adam", "foreach", "_amp", "lerp", "addcdiv", "sqrt")),
        ("dropout", ("dropout", "bernoulli")),
        ("dtype copies", ("copy_", "to", "_to_copy")),
    ):
        if any(w in n for w in words):
            return key
    return "other elementwise / bookkeeping"


def profile(fns, batches):
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    out = {}
    for name, fn in fns.items():
        fn(batches[0])
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches[:2]:
                fn(b)
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        fam = defaultdict(float)
        for e in events:
            fam[family(e.key)] += e.self_cpu_time_total
        top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
        out[name] = {
            "ms_per_step": total / 1e3 / 2,
            "families": {k: v / total for k, v in sorted(fam.items(), key=lambda kv: -kv[1])},
            "top_ops": [(e.key, e.self_cpu_time_total / total) for e in top],
        }
        print(name, json.dumps(out[name]["families"]))
    return out


def speed(size, args):
    config = make_config(size, args.seeds[0])
    train, _, _, model, trainer = prepare_training(config, create_dataset(config))
    batches = list(itertools.islice(train, args.batches))
    fns = step_fns(model, trainer)
    for fn in fns.values():  # warm-up: allocator, kernels
        fn(batches[0])
    times = {v: [] for v in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for b in batches:
                fn(b)
            times[name].append(sum(len(b) for b in batches) / (time.perf_counter() - t0))
    row = {
        "params": sum(p.numel() for p in model.parameters()),
        "levels": model.n_levels,
        "mean_history_tokens": float(sum(int(b[model.ITEM_SEQ_LEN].sum()) for b in batches)) / sum(len(b) for b in batches) * model.n_levels,
        "samples_per_s_median": {v: statistics.median(t) for v, t in times.items()},
        "samples_per_s_all": times,
    }
    med = row["samples_per_s_median"]
    row["speedup_vs_hf_fp32"] = {v: med[v] / med["hf_fp32"] for v in med}
    print(size, json.dumps(row["samples_per_s_median"]), json.dumps(row["speedup_vs_hf_fp32"]))
    if args.profile:
        row["profile"] = profile(fns, batches)
    return row


def quality(args):
    rows = []
    for seed in args.seeds:
        for amp in (False, True):
            config = make_config(
                "cpu_preset", seed, enable_amp=amp, epochs=args.epochs, eval_step=args.epochs,
                warmup_steps=args.warmup, valid_beam_size=20, beam_size=20, length_bucket_batches=50,
            )
            train, valid, _, model, trainer = prepare_training(config, create_dataset(config))
            t0 = time.perf_counter()
            _, result = trainer.fit(train, valid, saved=False, show_progress=False)
            row = {
                "seed": seed, "enable_amp": amp, "wall_s": time.perf_counter() - t0,
                "last_epoch_mean_loss": trainer.train_loss_dict[args.epochs - 1] / len(train),
                "valid_ndcg@10": result["ndcg@10"], "valid_recall@10": result["recall@10"],
            }
            print(json.dumps(row))
            rows.append(row)
    return rows


def markdown(r):
    lines = [
        "# TIGER training speed on office batches (CPU, one thread)",
        "",
        *[f"Command ({part}): `{cmd}`  " for part, cmd in r["commands"].items()],
        f"Machine: {r['machine']}; load average at start {r['load_start']} and end {r['load_end']} (shared CPU:",
        "compare the columns of one row, which ran interleaved).  ",
        "`hf` = transformers' T5ForConditionalGeneration with the model's weights and TIGER's former loss (the",
        "step before model/t5.py); `ours` = model/t5.py (SDPA attention, one decode pass); `bf16` = torch.autocast",
        "(bfloat16 matmuls, float32 master weights, float32 loss), RecBole's `enable_amp`.",
        "",
        "## Samples/s (median of interleaved repeats; batch 256; optimizer step included)",
        "",
        "| model | params | levels | hf fp32 (before) | hf bf16 | ours fp32 | ours bf16 | speed-up ours bf16 / hf fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, row in r["speed"].items():
        m = row["samples_per_s_median"]
        lines.append(
            f"| {size} | {row['params']:,} | {row['levels']} | {m['hf_fp32']:.1f} | {m['hf_bf16']:.1f} | "
            f"{m['ours_fp32']:.1f} | {m['ours_bf16']:.1f} | **{row['speedup_vs_hf_fp32']['ours_bf16']:.2f}x** |"
        )
    for size, row in r["speed"].items():
        if "profile" not in row:
            continue
        lines += ["", f"## Where the time goes: {size} (self CPU time, torch.profiler, 2 steps)", ""]
        fams = sorted({f for p in row["profile"].values() for f in p["families"]})
        lines.append("| operator family | " + " | ".join(f"{v} ({row['profile'][v]['ms_per_step']:.0f} ms/step)" for v in row["profile"]) + " |")
        lines.append("|---|" + "---|" * len(row["profile"]))
        for f in fams:
            lines.append(f"| {f} | " + " | ".join(f"{p['families'].get(f, 0):.1%}" for p in row["profile"].values()) + " |")
        lines += ["", "Top operators: " + "; ".join(
            f"**{v}**: " + ", ".join(f"{k} {s:.0%}" for k, s in p["top_ops"][:5]) for v, p in row["profile"].items()
        )]
    if r.get("quality"):
        q = r["quality"]
        lines += [
            "",
            f"## Quality: CPU preset, {r['epochs']} epochs, trainer.fit, validation NDCG@10 (beam 20)",
            "",
            "| seed | fp32 loss | bf16 loss | fp32 valid NDCG@10 | bf16 valid NDCG@10 | fp32 wall s | bf16 wall s |",
            "|---|---|---|---|---|---|---|",
        ]
        by = {(x["seed"], x["enable_amp"]): x for x in q}
        for s in sorted({x["seed"] for x in q}):
            a, b = by[(s, False)], by[(s, True)]
            lines.append(
                f"| {s} | {a['last_epoch_mean_loss']:.4f} | {b['last_epoch_mean_loss']:.4f} | {a['valid_ndcg@10']:.4f} | "
                f"{b['valid_ndcg@10']:.4f} | {a['wall_s']:.0f} | {b['wall_s']:.0f} |"
            )
        for key in ("last_epoch_mean_loss", "valid_ndcg@10"):
            for amp in (False, True):
                vals = [x[key] for x in q if x["enable_amp"] == amp]
                lines.append(f"\n{key}, {'bf16' if amp else 'fp32'}: mean {statistics.mean(vals):.4f}"
                             + (f", sd {statistics.stdev(vals):.4f}" if len(vals) > 1 else ""))
    lines.append("")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["speed", "quality"], choices=["speed", "quality"])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--batches", type=int, default=4, help="training batches per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--seeds", type=int, nargs="+", default=[2024, 2025, 2026])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--warmup", type=int, default=100, help="warm-up optimizer steps of the quality runs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=OUT)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, torch {torch.__version__}",
        "load_start": tuple(round(x, 1) for x in os.getloadavg()), "epochs": args.epochs,
        "speed": {}, "quality": [],
    }
    if os.path.isfile(args.out + ".json"):  # keep the other part's results of an earlier run
        with open(args.out + ".json") as f:
            old = json.load(f)
        report["speed"], report["quality"] = old.get("speed", {}), old.get("quality", [])
        report["commands"] = old.get("commands", {})
    report.setdefault("commands", {}).update({part: f"{report['command']} (commit {commit}, {report['date']})" for part in args.parts})
    if "speed" in args.parts:
        report["speed"].update({size: speed(size, args) for size in args.sizes})
    if "quality" in args.parts:
        report["quality"] = quality(args)
    report["load_end"] = tuple(round(x, 1) for x in os.getloadavg())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(report))
    print(f"wrote {args.out}.json and .md")


if __name__ == "__main__":
    main()
