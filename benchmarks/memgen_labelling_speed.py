"""How long the memorization/generalization labels take at Beauty scale (22k users, 12k items).

    OMP_NUM_THREADS=1 python benchmarks/memgen_labelling_speed.py

Loads Amazon Beauty through RecBole exactly as the models get it (properties/dataset/beauty.yaml),
then times each stage of recbole_genrec.analysis.memgen: rebuilding the train sequences from the
train split, reading the valid/test instances from the loaders, the transition sets T_1..T_4, the
item labels (spec §2) and the token labels (spec §3, the published RQ-VAE codes
beauty.sid-rqvae.json, 4 levels) of both splits, then the cached reload. Writes
benchmarks/results/memgen_labelling_speed.{md,json}.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_genrec.analysis import memgen  # noqa: E402
from recbole_genrec.config import Config  # noqa: E402
from recbole_genrec.tokenizer.sid_file import load_sid_file  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "memgen_labelling_speed")


def timed(stages, name, fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    stages[name] = time.perf_counter() - start
    print(f"{name}: {stages[name]:.2f} s", flush=True)
    return value


def main():
    stages = {}
    config = Config(model="SASRec", dataset="beauty", config_file_list=["properties/dataset/beauty.yaml"],
                    config_dict={"show_progress": False})
    train, valid, test = timed(stages, "RecBole: load + split (not part of labelling)", memgen.load_splits, config)
    ds = train._dataset
    seqs = timed(stages, "train sequences from the train split", memgen.train_sequences, ds)
    inst = timed(stages, "valid + test instances from the loaders",
                 lambda: {"valid": memgen.eval_instances(valid), "test": memgen.eval_instances(test)})
    tokens = ds.field2id_token[ds.iid_field]
    real = load_sid_file("../shared/data/beauty/beauty.sid-rqvae.json", list(tokens[1:]), "beauty")
    codes = np.zeros((ds.item_num, real.shape[1]), dtype=np.int64)
    codes[1:] = real
    ts = timed(stages, "transition sets T_1..T_4 (sparse)", memgen.TransitionSets, seqs, 4, ds.item_num)
    for split in ("valid", "test"):
        timed(stages, f"item labels, {split}", memgen.label_items, seqs, inst[split], 4, ds.item_num, transitions=ts)
        timed(stages, f"token labels, {split} ({codes.shape[1]} levels)", memgen.label_tokens, seqs, inst[split], codes, 4)
    with tempfile.TemporaryDirectory() as cache:
        labels, info = timed(stages, "compute_labels, both splits, items + tokens (cold, writes the cache)",
                             memgen.compute_labels, seqs, inst, 4, codes, ds.item_num, cache)
        timed(stages, "compute_labels again (cache hit)", memgen.compute_labels, seqs, inst, 4, codes, ds.item_num, cache)
    item = labels["test"]["item"]
    shares = {m: float((item.master == i).mean()) for i, m in enumerate(memgen.MASTER)}
    result = {"dataset": "beauty", "users": int(len(inst["test"])), "items": int(ds.item_num - 1),
              "train_positions": int(len(seqs.items)), "transitions_T4": int(ts.succ[4].nnz),
              "seconds": stages, "test_shares": shares,
              "command": "OMP_NUM_THREADS=1 python benchmarks/memgen_labelling_speed.py"}
    with open(OUT + ".json", "w") as f:
        json.dump(result, f, indent=1)
    lines = ["# Memorization/generalization labelling speed on Beauty", "",
             f"{result['users']} users (valid and test instances each), {result['items']} items, "
             f"{result['train_positions']} train positions, |T_4| = {result['transitions_T4']} item pairs. "
             "One thread (OMP_NUM_THREADS=1) on a shared 2-core CPU (load from other jobs; wall-clock seconds).", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in stages.items()]
    lines += ["", "Test shares: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()), "",
              "Command:", "", "```", result["command"], "```", ""]
    with open(OUT + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
