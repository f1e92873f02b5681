"""Length-bucketed batches for TIGER on Amazon Office: training speed and quality, side by side.

    OMP_NUM_THREADS=1 python benchmarks/length_bucketing.py --epochs 4 --buckets 0 50

Same split, codes (the published ``office.sid-rqkmeans.json``), seed, model (TIGER's CPU
preset) and schedule for every setting; only ``length_bucket_batches`` differs (0 = RecBole's
plain shuffle). Runs one setting after the other in this process, 1 torch thread. Records the
encoder positions each epoch pads to (the quantity bucketing removes), the seconds per training
epoch (wall and CPU), and valid/test Recall/NDCG@10 (beam 20, trie-constrained) after the last
epoch. Writes ``benchmarks/results/length_bucketing_office.{json,md}``.
"""

import argparse
import json
import os
import sys
import time

import torch
from recbole.utils import init_logger, init_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recbole_genrec.config import Config  # noqa: E402
from recbole_genrec.model.tiger import TIGER  # noqa: E402
from recbole_genrec.quick_start import prepare_training  # noqa: E402
from recbole_genrec.utils import create_dataset  # noqa: E402

OUT = os.path.join(ROOT, "benchmarks", "results", "length_bucketing_office")
CPU_PRESET = os.path.join(ROOT, "recbole_genrec", "properties", "model", "TIGER-cpu.yaml")


def make_config(buckets, args):
    keys = {
        "sid_file": os.path.join(ROOT, "..", "shared", "data", "office", "office.sid-rqkmeans.json"),
        "data_path": os.path.join(ROOT, "..", "shared", "data"),
        "checkpoint_dir": os.path.join(ROOT, "saved", f"bucketing_{buckets}"),
        "seed": args.seed, "reproducibility": True, "epochs": args.epochs, "eval_step": args.epochs,
        "train_batch_size": args.batch, "warmup_steps": 150, "eval_batch_size": 512,
        "beam_size": 20, "valid_beam_size": 20, "metrics": ["Recall", "NDCG"], "topk": [10],
        "valid_metric": "NDCG@10", "length_bucket_batches": buckets, "show_progress": False,
        "log_wandb": False, "state": "WARNING",
    }
    return Config(model=TIGER, dataset="office", config_dict=keys,
                  config_file_list=[os.path.join(ROOT, "properties", "dataset", "office.yaml"), CPU_PRESET], argv=[])


def run(buckets, args, dataset):
    config = make_config(buckets, args)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    train, valid, test, model, trainer = prepare_training(config, dataset)
    epoch_wall, epoch_cpu, padded = [], [], []
    plain_train_epoch = trainer._train_epoch

    def timed_epoch(train_data, epoch_idx, *a, **k):
        lengths = [int(b["item_length"].max()) * len(b) for b in train_data]  # the epoch's padding
        if hasattr(train_data, "set_epoch"):  # replay the epoch just counted
            train_data.set_epoch(epoch_idx)
        padded.append(sum(lengths))
        w, c = time.perf_counter(), time.process_time()
        out = plain_train_epoch(train_data, epoch_idx, *a, **k)
        epoch_wall.append(time.perf_counter() - w)
        epoch_cpu.append(time.process_time() - c)
        return out

    trainer._train_epoch = timed_epoch
    _, valid_result = trainer.fit(train, valid, saved=True)
    test_result = trainer.evaluate(test, load_best_model=True)
    real = int(train._dataset.inter_feat["item_length"].sum())
    return {
        "length_bucket_batches": buckets, "epochs": args.epochs, "seed": args.seed, "batch": args.batch,
        "history_items_per_epoch": real, "padded_items_per_epoch": padded,
        "epoch_wall_s": epoch_wall, "epoch_cpu_s": epoch_cpu,
        "valid": {k: float(v) for k, v in valid_result.items()},
        "test": {k: float(v) for k, v in test_result.items()},
    }


def write(rows, command):
    with open(OUT + ".json", "w") as f:
        json.dump({"command": command, "runs": rows}, f, indent=1)
    base = rows[0]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    lines = [
        "# Length-bucketed batches: TIGER (CPU preset) on office", "",
        f"Command: `{command}` (1 torch thread, one setting after the other in one process).", "",
        "| length_bucket_batches | padded history items / epoch | s / epoch (wall) | CPU s / epoch | speed-up | valid NDCG@10 | test Recall@10 | test NDCG@10 |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['length_bucket_batches']} | {mean(r['padded_items_per_epoch']):,.0f} "
            f"({mean(r['padded_items_per_epoch']) / r['history_items_per_epoch']:.2f}x real) | "
            f"{mean(r['epoch_wall_s']):.1f} | {mean(r['epoch_cpu_s']):.1f} | "
            f"{mean(base['epoch_cpu_s']) / mean(r['epoch_cpu_s']):.2f}x | {r['valid']['ndcg@10']:.4f} | "
            f"{r['test']['recall@10']:.4f} | {r['test']['ndcg@10']:.4f} |"
            for r in rows
        ),
        "", f"{base['epochs']} epochs, batch {base['batch']}, seed {base['seed']}, beam 20 (valid and test); "
        "speed-up = CPU seconds per epoch of the first row / this row's.",
    ]
    with open(OUT + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--buckets", type=int, nargs="+", default=[0, 50])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for buckets in args.buckets:
        dataset = create_dataset(make_config(buckets, args))  # build() mutates it: one per run
        rows.append(run(buckets, args, dataset))
        write(rows, " ".join(["python"] + sys.argv))


if __name__ == "__main__":
    main()
