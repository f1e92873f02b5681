"""TIGER beam-search speed on office (CPU): our beam search in float32 and bf16 vs transformers' ``generate``.

The model (spec size unless ``--config-files`` adds e.g. properties/model/TIGER-cpu.yaml) is
built and trained by the package (``prepare_training``, ``trainer.fit`` for ``--epochs``) on
office (properties/dataset/office.yaml). Then, on the same ``--users`` test users, batches
of ``--batch`` and beam widths ``--beams``, side by side:

- ours: ``TIGER.generate`` constrained (prefix trie), float32 and under bf16 autocast
  (``enable_amp``), and unconstrained float32 (invalid-ID rate);
- transformers: ``T5ForConditionalGeneration.generate(num_beams=W, prefix_allowed_tokens_fn=trie)``
  on the model's weights (same parameter names), float32;
- the encoder alone (the bound on any decoder).

Users/s of each, top-10 agreement (same item at the same rank) of bf16 and of transformers
with ours in float32, and Recall/NDCG@10 of every method by RecBole's evaluator (the scores
are ``TIGER.beam_to_scores`` of each method's beams, collected by RecBole's ``Collector``).

    python benchmarks/decoding_speed.py            # -> benchmarks/results/decoding_office.{json,md}
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recbole.evaluator import Collector, Evaluator  # noqa: E402

from recbole_genrec.config import Config  # noqa: E402
from recbole_genrec.quick_start import prepare_training  # noqa: E402
from recbole_genrec.utils import create_dataset  # noqa: E402

OFFICE = os.path.join(ROOT, "properties", "dataset", "office.yaml")


def hf_twin(model):
    from transformers import T5Config, T5ForConditionalGeneration

    dims = vars(model.t5.dims)
    hf = T5ForConditionalGeneration(T5Config(**dims, pad_token_id=0, decoder_start_token_id=0, eos_token_id=model.eos_token))
    hf.load_state_dict(model.t5.state_dict())
    return hf.eval()


def hf_prefix_fn(model):
    """``prefix_allowed_tokens_fn`` over the same trie: decoder prefix -> allowed next tokens."""
    allowed = {}
    for row in model.item_tokens[1:].tolist():
        prefix = (0,)
        for tok in row:
            allowed.setdefault(prefix, set()).add(tok)
            prefix = prefix + (tok,)
    allowed = {k: sorted(v) for k, v in allowed.items()}
    return lambda batch_id, sent: allowed.get(tuple(sent.tolist()), [model.eos_token])


def hf_items(hf, model, interaction, beam, prefix_fn):
    ids, mask = model._interaction_inputs(interaction)
    out = hf.generate(
        input_ids=ids, attention_mask=mask, num_beams=beam, num_return_sequences=beam,
        max_new_tokens=model.n_levels, do_sample=False, prefix_allowed_tokens_fn=prefix_fn,
    )
    seq = out[:, 1 : 1 + model.n_levels].reshape(ids.shape[0], beam, -1)
    return model.trie.lookup(seq - model.offsets)  # [B, W] item ids (-1: invalid)


def timed(fn, batches):
    fn(batches[0][0])  # warm-up (not timed)
    t0 = time.perf_counter()
    outs = [fn(b[0]) for b in batches]
    return outs, sum(len(b[0]) for b in batches) / (time.perf_counter() - t0)


def recbole_metrics(config, model, batches, items):
    """Recall/NDCG@10 by RecBole's Collector + Evaluator, on the scores the beams give."""
    collector, evaluator = Collector(config), Evaluator(config)
    for (interaction, _, positive_u, positive_i), its in zip(batches, items):
        scores = model.beam_to_scores(its, model.n_items)
        scores[:, 0] = -float("inf")
        collector.eval_batch_collect(scores, interaction, positive_u, positive_i)
    result = evaluator.evaluate(collector.get_data_struct())
    return {k: float(result[k]) for k in ("recall@10", "ndcg@10")}


def agreement(a, b, k=10):
    return float((torch.cat(a)[:, :k] == torch.cat(b)[:, :k]).float().mean())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-files", nargs="*", default=[], help="extra yaml files (e.g. the CPU preset)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs before decoding (trainer.fit)")
    p.add_argument("--users", type=int, default=256, help="test users decoded per method")
    p.add_argument("--batch", type=int, default=64, help="users per decoding batch (all methods)")
    p.add_argument("--beams", type=int, nargs="+", default=[20, 50])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--tag", default="", help="suffix of the result files (decoding_office[_<tag>])")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    keys = {
        "sid_file": os.path.join(ROOT, "..", "shared", "data", "office", "office.sid-rqkmeans.json"),
        "data_path": os.path.join(ROOT, "..", "shared", "data"),
        "checkpoint_dir": os.path.join(ROOT, "saved", "decoding_speed"),
        "train_batch_size": 256, "eval_batch_size": args.batch, "epochs": args.epochs, "enable_amp": True,
        "length_bucket_batches": 50, "seed": args.seed, "show_progress": False, "state": "WARNING",
        "log_wandb": False, "topk": [10], "metrics": ["Recall", "NDCG"], "valid_metric": "NDCG@10",
    }
    config = Config(model="TIGER", dataset="office", config_file_list=[OFFICE, *args.config_files], config_dict=keys)
    train, _, test, model, trainer = prepare_training(config, create_dataset(config))
    t0 = time.perf_counter()
    trainer.fit(train, None, saved=False)  # bf16 autocast training (enable_amp), no validation
    train_s = time.perf_counter() - t0
    model.eval()

    batches, n = [], 0
    for interaction, history, positive_u, positive_i in test:
        k = min(len(interaction), args.users - n)
        keep = positive_u < k
        batches.append((interaction[:k], history, positive_u[keep], positive_i[keep]))
        n += k
        if n >= args.users:
            break
    hf, prefix_fn = (None, None) if args.skip_hf else (hf_twin(model), hf_prefix_fn(model))

    def ours(decoding, amp):
        def run(interaction, beam):
            model.enable_amp = amp
            return model.generate(interaction, beam, decoding).items

        return run

    runs = []
    with torch.no_grad():
        for amp in (False, True):
            model.enable_amp = amp
            with model.autocast("cpu"):
                _, enc = timed(lambda b: model.encode(*model._interaction_inputs(b)), batches)
            runs.append({"method": f"encoder alone ({'bf16' if amp else 'fp32'})", "users_per_s": enc})
        for beam in args.beams:
            methods = {
                "ours constrained fp32": ours("constrained", False),
                "ours constrained bf16": ours("constrained", True),
                "ours unconstrained fp32": ours("unconstrained", False),
            }
            if hf is not None:
                methods["transformers generate + prefix_allowed_tokens_fn fp32"] = lambda b, w: hf_items(hf, model, b, w, prefix_fn)
            items = {}
            for name, fn in methods.items():
                items[name], speed = timed(lambda b: fn(b, beam), batches)
                row = {"method": name, "beam": beam, "users": n, "batch": args.batch, "users_per_s": speed,
                       **recbole_metrics(config, model, batches, items[name])}
                flat = torch.cat(items[name])
                row["invalid_rate"], row["invalid_rate_top10"] = float((flat < 0).float().mean()), float((flat[:, :10] < 0).float().mean())
                row["top10_same_as_ours_fp32"] = agreement(items[name], items["ours constrained fp32"])
                print(json.dumps(row))
                runs.append(row)
            base = next(r for r in runs if r.get("beam") == beam and r["method"] == "ours constrained fp32")["users_per_s"]
            for r in runs:
                if r.get("beam") == beam:
                    r["speed_vs_ours_fp32"] = r["users_per_s"] / base
    model.enable_amp = config["enable_amp"]

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, torch {torch.__version__}",
        "load_average_at_end": tuple(round(x, 1) for x in os.getloadavg()),
        "model": {"params": sum(q.numel() for q in model.parameters()),
                  **{k: config[k] for k in ("n_layers", "d_model", "d_ff", "n_heads", "d_kv")}},
        "n_items": model.n_items, "levels": model.n_levels,
        "train": {"epochs": args.epochs, "seconds": train_s, "enable_amp": True},
        "runs": runs,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "decoding_office" + (f"_{args.tag}" if args.tag else ""))
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(markdown(report))
    print(f"wrote {stem}.json and {stem}.md")


def markdown(r):
    lines = [
        "# TIGER decoding speed on office (CPU)",
        "",
        f"Command: `{r['command']}` (commit {r['commit']}, {r['date']})  ",
        f"Machine: {r['machine']}; load average at end {r['load_average_at_end']} (shared CPU: compare rows of",
        "one beam width, which ran one after the other on the same users).  ",
        f"Model: our T5 ({r['model']}), {r['n_items']} items, {r['levels']} code levels, trained {r['train']['epochs']} "
        f"epoch(s) by trainer.fit under bf16 autocast ({r['train']['seconds']:.0f} s).",
        "",
        "| method | beam | users/s | vs ours fp32 | top-10 same as ours fp32 | Recall@10 | NDCG@10 | invalid (all / top 10) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in r["runs"]:
        if "beam" not in x:
            lines.append(f"| {x['method']} | - | {x['users_per_s']:.1f} | | | | | |")
            continue
        lines.append(
            f"| {x['method']} | {x['beam']} | {x['users_per_s']:.1f} | {x['speed_vs_ours_fp32']:.2f}x | "
            f"{x['top10_same_as_ours_fp32']:.3f} | {x['recall@10']:.4f} | {x['ndcg@10']:.4f} | "
            f"{x['invalid_rate']:.4f} / {x['invalid_rate_top10']:.4f} |"
        )
    lines += [
        "",
        "Recall/NDCG@10: RecBole's evaluator on the first test users after a short training; they compare",
        "the methods on the same users, not the model's quality. `top-10 same` = fraction of (user, rank)",
        "slots holding the same item as our float32 constrained search.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
