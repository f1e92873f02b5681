"""Where the time of one TIGER beam search goes (torch profiler), spec-size model, untrained.

Random collision-free 4x256 codes (a speed profile: the model's quality does not matter,
the trie shape does, so ``--items`` sets the catalogue size). Writes
benchmarks/results/decoding_profile.md with the exact command.

    python benchmarks/decoding_profile.py --items 12101 --batch 64 --beam 50
"""

import argparse
import os
import sys
import time

import torch
from torch.profiler import profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recbole.data.interaction import Interaction  # noqa: E402

from recbole_genrec.config import Config  # noqa: E402
from recbole_genrec.model.tiger import TIGER  # noqa: E402


class RandomCodes:
    """What TIGER reads from a dataset: ``n_items - 1`` distinct random 4x256 codes."""

    def __init__(self, n_items, seed=0):
        g = torch.Generator().manual_seed(seed)
        codes = torch.unique(torch.randint(0, 256, (2 * n_items, 4), generator=g), dim=0)
        codes = codes[torch.randperm(len(codes), generator=g)[: n_items - 1]]
        self.item_sid = torch.cat([torch.zeros(1, 4, dtype=torch.long), codes])
        self.sid_codebook_sizes = [256] * 4
        self.n_items = n_items

    def num(self, field):
        return self.n_items


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=12101)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--beam", type=int, default=50)
    p.add_argument("--history", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "decoding_profile.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Config(model=TIGER, dataset="profile", config_dict={"data_path": ROOT, "state": "WARNING"})
    model = TIGER(config, RandomCodes(args.items)).eval()
    B = args.batch
    seq = torch.randint(1, args.items, (B, args.history))
    lengths = torch.randint(3, args.history + 1, (B,))
    seq[torch.arange(args.history)[None, :] >= lengths[:, None]] = 0
    inter = Interaction({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths, model.USER_ID: torch.arange(B)})
    rows = []
    for decoding in ("constrained", "unconstrained"):
        model.generate(inter, args.beam, decoding)
        t0 = time.perf_counter()
        for _ in range(3):
            model.generate(inter, args.beam, decoding)
        rows.append((decoding, 3 * B / (time.perf_counter() - t0)))
    with torch.no_grad():
        hidden_t0 = time.perf_counter()
        for _ in range(3):
            model.encode(*model._interaction_inputs(inter))
        enc = 3 * B / (time.perf_counter() - hidden_t0)
    with profile() as prof:
        model.generate(inter, args.beam, "constrained")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    text = [
        "# Profile of one constrained beam search (spec-size TIGER, untrained, random 4x256 codes)",
        "",
        f"Command: `{cmd}`; {args.items} items, batch {B}, beam {args.beam}, history {args.history}, "
        f"torch threads {args.threads}, load average {tuple(round(x, 2) for x in os.getloadavg())} (shared CPU).",
        "",
        "| what | users/s |",
        "|---|---|",
        *[f"| beam search, {d} | {v:.1f} |" for d, v in rows],
        f"| encoder alone | {enc:.1f} |",
        "",
        "```",
        table,
        "```",
        "",
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
