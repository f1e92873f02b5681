"""TIGER decoding and training speed on CPU: our beam search vs transformers' ``generate``.

What it measures, on ONE model (spec-size TIGER unless overridden), one batch layout and one
beam width at a time, side by side in one process:

1. training: samples/second of ``calculate_loss`` + backward + AdamW for ``--train-seconds``
   (this brief training is also what makes the invalid-ID rate meaningful), peak RSS;
2. users/second of
   - ours, constrained (prefix trie)       ``TIGER.generate(..., decoding="constrained")``
   - ours, unconstrained (full vocabulary) ``TIGER.generate(..., decoding="unconstrained")``
   - transformers ``generate(num_beams=W, prefix_allowed_tokens_fn=trie)``  (the baseline)
   - transformers ``generate(num_beams=W)`` without constraint (reference)
   on the same test users, batches and beam, with the agreement of our constrained top-10
   with the baseline's;
3. the invalid-ID rate of unconstrained decoding (all beams and top 10), and Recall/NDCG@10
   of both modes on those users.

Usage (results in benchmarks/results/decoding_<dataset>.{json,md}):

    python benchmarks/decoding_speed.py --dataset office --sid-file office.sid-rqkmeans.json
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recbole.utils import init_seed  # noqa: E402

from recbole_genrec.config import Config  # noqa: E402
from recbole_genrec.model.tiger import TIGER  # noqa: E402
from recbole_genrec.utils import create_dataset, data_preparation  # noqa: E402


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(args):
    config = Config(
        model=TIGER,
        dataset=args.dataset,
        config_dict={
            "data_path": args.data_path,
            "sid_file": args.sid_file,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
            "user_inter_num_interval": "[5,inf)",
            "item_inter_num_interval": "[5,inf)",
            "train_batch_size": args.train_batch_size,
            "eval_batch_size": args.batch,
            "checkpoint_dir": args.checkpoint_dir,
            "state": "WARNING",
            "show_progress": False,
            "seed": args.seed,
            **json.loads(args.model_json),
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = TIGER(config, train._dataset)
    return config, model, train, test


def train_briefly(config, model, train, seconds):
    opt = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
    warm = max(1, min(200, int(seconds)))  # short linear warm-up, then constant (a speed run, not a recipe)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    model.train()
    rss_before = rss_mb()
    n, steps, losses, start, t0 = 0, 0, [], None, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for batch in train:
            loss = model.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            steps += 1
            losses.append(loss.item())
            if start is None:  # the first step (allocations, thread start-up) is not timed
                start = time.perf_counter()
            else:
                n += len(batch)
            if time.perf_counter() - t0 >= seconds:
                break
    elapsed = time.perf_counter() - start if start else float("nan")
    model.eval()
    return {
        "steps": steps,
        "epochs": steps / len(train),
        "samples_per_second": n / elapsed if elapsed > 0 else float("nan"),
        "first_loss": losses[0],
        "last_loss_mean_of_20": sum(losses[-20:]) / len(losses[-20:]),
        "peak_rss_mb": rss_mb(),
        "peak_rss_growth_mb": rss_mb() - rss_before,
    }


def hf_prefix_fn(model):
    """``prefix_allowed_tokens_fn`` over the same trie: dict of decoder prefixes -> allowed tokens."""
    tokens = model.item_tokens[1:].tolist()
    allowed = {}
    for row in tokens:
        prefix = (0,)
        for tok in row:
            allowed.setdefault(prefix, set()).add(tok)
            prefix = prefix + (tok,)
    allowed = {k: sorted(v) for k, v in allowed.items()}
    return lambda batch_id, sent: allowed.get(tuple(sent.tolist()), [model.eos_token])


def hf_generate(model, interaction, beam, prefix_fn):
    ids, mask = model._interaction_inputs(interaction)
    out = model.t5.generate(
        input_ids=ids,
        attention_mask=mask,
        num_beams=beam,
        num_return_sequences=beam,
        max_new_tokens=model.n_levels,
        do_sample=False,
        prefix_allowed_tokens_fn=prefix_fn,
        return_dict_in_generate=True,
        output_scores=False,
    )
    if prefix_fn is None:  # unconstrained reference: speed only (beams may stop early at EOS)
        return None
    seq = out.sequences[:, 1 : 1 + model.n_levels].reshape(ids.shape[0], beam, -1)
    return model.trie.lookup(seq - model.offsets)  # [B, W] item ids (-1 invalid)


def timed(fn, batches):
    fn(batches[0])  # warm-up (not timed)
    outs, t0 = [], time.perf_counter()
    for b in batches:
        outs.append(fn(b))
    return outs, sum(len(b) for b in batches) / (time.perf_counter() - t0)


def rank_metrics(items, targets, k=10):
    hit = (items[:, :k] == targets[:, None]).float()
    pos = torch.arange(1, k + 1, dtype=torch.float)
    return float(hit.sum(1).mean()), float((hit / torch.log2(pos + 1)).sum(1).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="office")
    p.add_argument("--sid-file", default="office.sid-rqkmeans.json")
    p.add_argument("--data-path", default=os.path.join(ROOT, "..", "shared", "data"))
    p.add_argument("--model-json", default="{}", help='TIGER.yaml overrides, e.g. \'{"n_layers": 2}\'')
    p.add_argument("--train-seconds", type=float, default=300)
    p.add_argument("--train-batch-size", type=int, default=256)
    p.add_argument("--users", type=int, default=256, help="test users decoded per method")
    p.add_argument("--batch", type=int, default=64, help="users per decoding batch (all methods)")
    p.add_argument("--beams", type=int, nargs="+", default=[20, 50])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--tag", default="", help="suffix of the result files (decoding_<dataset>[_<tag>])")
    p.add_argument("--checkpoint-dir", default=os.path.join(ROOT, "saved", "bench"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    config, model, train, test = build(args)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: {n_params} params, items {model.n_items}, levels {model.n_levels}, build {time.perf_counter() - t0:.1f}s")
    train_stats = train_briefly(config, model, train, args.train_seconds)
    print("train:", json.dumps(train_stats))

    batches, n = [], 0
    for interaction, _, _, pos_i in test:
        batches.append(interaction[: min(len(interaction), args.users - n)])
        n += len(batches[-1])
        if n >= args.users:
            break
    targets = torch.cat([b[model.ITEM_ID] for b in batches])
    prefix_fn = hf_prefix_fn(model)

    runs = []
    with torch.no_grad():
        for beam in args.beams:
            row = {"beam": beam, "users": n, "batch": args.batch}
            res, row["ours_constrained_users_per_s"] = timed(lambda b: model.generate(b, beam, "constrained"), batches)
            ours = torch.cat([r.items for r in res])
            row["constrained_invalid_rate"] = sum(r.invalid_rate() * r.items.numel() for r in res) / ours.numel()
            row["constrained_recall@10"], row["constrained_ndcg@10"] = rank_metrics(ours, targets)
            res_u, row["ours_unconstrained_users_per_s"] = timed(
                lambda b: model.generate(b, beam, "unconstrained"), batches
            )
            items_u = torch.cat([r.items for r in res_u])
            row["unconstrained_invalid_rate"] = float((items_u < 0).float().mean())
            row["unconstrained_invalid_rate_top10"] = float((items_u[:, :10] < 0).float().mean())
            # papers' code: invalid beams keep their rank slot; plugin: they are skipped
            row["unconstrained_recall@10_invalid_in_place"], row["unconstrained_ndcg@10_invalid_in_place"] = (
                rank_metrics(items_u, targets)
            )
            skipped = torch.stack([torch.cat([r[r >= 0], r[r < 0]]) for r in items_u])
            row["unconstrained_recall@10"], row["unconstrained_ndcg@10"] = rank_metrics(skipped, targets)
            row["unconstrained_overhead_vs_constrained"] = (
                row["ours_constrained_users_per_s"] / row["ours_unconstrained_users_per_s"]
            )
            if not args.skip_hf:
                hf, row["hf_generate_prefix_fn_users_per_s"] = timed(
                    lambda b: hf_generate(model, b, beam, prefix_fn), batches
                )
                hf = torch.cat(hf)
                row["speedup_vs_hf_prefix_fn"] = row["ours_constrained_users_per_s"] / row["hf_generate_prefix_fn_users_per_s"]
                row["top10_agreement_with_hf"] = float((hf[:, :10] == ours[:, :10]).float().mean())
                row["top10_set_agreement_with_hf"] = float(
                    sum(len(set(a) & set(b)) for a, b in zip(hf[:, :10].tolist(), ours[:, :10].tolist())) / (10 * n)
                )
                _, row["hf_generate_unconstrained_users_per_s"] = timed(
                    lambda b: hf_generate(model, b, beam, None), batches
                )
            print(json.dumps(row))
            runs.append(row)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, torch threads {args.threads}, torch {torch.__version__}",
        "load_average_at_end": os.getloadavg(),
        "dataset": args.dataset,
        "sid_file": args.sid_file,
        "codes": "real precomputed semantic IDs (sid_file) via SemanticIDDataset",
        "model": {"params": n_params, **{k: config[k] for k in ("n_layers", "d_model", "d_ff", "n_heads", "d_kv", "n_user_tokens")}},
        "n_items": model.n_items,
        "levels": model.n_levels,
        "train": {"batch_size": args.train_batch_size, "seconds": args.train_seconds, **train_stats},
        "decoding": runs,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"decoding_{args.dataset}" + (f"_{args.tag}" if args.tag else ""))
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown(report))
    print(f"wrote {stem}.json and {stem}.md")


def markdown(r):
    t = r["train"]
    lines = [
        f"# TIGER decoding speed on `{r['dataset']}` (CPU)",
        "",
        f"Command: `{r['command']}` (commit {r['commit']}, {r['date']})  ",
        f"Machine: {r['machine']}; load average at end {tuple(round(x, 2) for x in r['load_average_at_end'])} "
        "(the CPU is shared with other jobs: compare columns of one row, which ran side by side).  ",
        f"Model: T5 ({r['model']}), {r['n_items']} items, {r['levels']} code levels; codes: {r['codes']}.",
        "",
        "## Training (brief; this is the model decoded below)",
        "",
        f"{t['steps']} AdamW steps ({t['epochs']:.2f} epochs) at batch {t['batch_size']} in {t['seconds']:.0f} s: "
        f"**{t['samples_per_second']:.1f} samples/s**, loss {t['first_loss']:.3f} -> {t['last_loss_mean_of_20']:.3f}, "
        f"peak RSS {t['peak_rss_mb']:.0f} MiB (growth during training {t['peak_rss_growth_mb']:.0f} MiB).",
        "",
        "## Decoding (users/second, same users, batches and beam for every column)",
        "",
        "| beam | ours constrained | HF generate + prefix_allowed_tokens_fn | speed-up | ours unconstrained | constrained speed / unconstrained speed | HF generate unconstrained | top-10 same as HF (position / set) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in r["decoding"]:
        hf = d.get("hf_generate_prefix_fn_users_per_s")
        lines.append(
            f"| {d['beam']} | {d['ours_constrained_users_per_s']:.1f} | "
            + (f"{hf:.1f} | **{d['speedup_vs_hf_prefix_fn']:.1f}x** | " if hf else "- | - | ")
            + f"{d['ours_unconstrained_users_per_s']:.1f} | {d['unconstrained_overhead_vs_constrained']:.2f} | "
            + (f"{d['hf_generate_unconstrained_users_per_s']:.1f} | {d['top10_agreement_with_hf']:.3f} / {d['top10_set_agreement_with_hf']:.3f} |" if hf else "- | - |")
        )
    lines += [
        "",
        "## Unconstrained decoding: invalid IDs (briefly trained model)",
        "",
        "| beam | users | invalid-ID rate, all beams | in top 10 | constrained invalid rate | R@10 / N@10 constrained | unconstrained, invalid skipped | unconstrained, invalid in place (papers' code) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in r["decoding"]:
        lines.append(
            f"| {d['beam']} | {d['users']} | {d['unconstrained_invalid_rate']:.4f} | {d['unconstrained_invalid_rate_top10']:.4f} | "
            f"{d['constrained_invalid_rate']:.4f} | {d['constrained_recall@10']:.4f} / {d['constrained_ndcg@10']:.4f} | "
            f"{d['unconstrained_recall@10']:.4f} / {d['unconstrained_ndcg@10']:.4f} | "
            f"{d['unconstrained_recall@10_invalid_in_place']:.4f} / {d['unconstrained_ndcg@10_invalid_in_place']:.4f} |"
        )
    lines += [
        "",
        "Recall/NDCG here are on the first users of the test split after a few minutes of training: they",
        "show the decoding modes side by side, not the model's quality (see the comparison benchmark).",
        "Where the spec is silent: HF beam scores are sums of full-vocabulary log-probs (length penalty",
        "is a no-op at equal length), as ours, so both searches rank the same way up to float ties.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
