"""Shared pytest fixtures: a tiny synthetic RecBole dataset written to a temp folder.

Every test that needs RecBole data uses ``tiny_data`` (or writes its own variant with
``write_tiny_dataset``) so the default suite never touches ``../shared/data``.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = (
    "pen paper ink stapler folder binder desk lamp chair tape label marker "
    "notebook envelope clip printer toner cable phone calendar"
).split()


def write_tiny_dataset(
    root,
    name="tiny",
    n_users=40,
    n_items=30,
    min_len=5,
    max_len=12,
    seed=0,
    with_item_file=True,
    text_fields=("title", "brand"),
    empty_text_items=(),
):
    """Write ``root/name/name.inter`` (+ ``name.item``) in RecBole atomic format.

    Sequences follow a noisy cyclic walk over items so that sequential models can learn
    something in one epoch; timestamps are positions (``order: TO``).
    Returns the dataset folder's parent (use it as ``data_path``).
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(n_users):
        length = int(rng.integers(min_len, max_len + 1))
        item = int(rng.integers(n_items))
        for t in range(length):
            rows.append(f"u{u}\ti{item}\t{t}")
            step = 1 if rng.random() < 0.8 else int(rng.integers(2, 5))
            item = (item + step) % n_items
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("\n".join(rows) + "\n")
    if with_item_file:
        header = ["item_id:token"] + [f"{field}:token_seq" for field in text_fields]
        rows = ["\t".join(header)]
        for i in range(n_items):
            values = []
            for k, _ in enumerate(text_fields):
                if i in empty_text_items:
                    values.append("")
                else:
                    words = [WORDS[(i * (k + 3) + j) % len(WORDS)] for j in range(3)]
                    values.append(" ".join(words) + f" model {i % 7}")
            rows.append("\t".join([f"i{i}"] + values))
        with open(os.path.join(folder, f"{name}.item"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return str(root)


def tiny_config(data_path, tmp_path, **overrides):
    """A config dict for fast tests: leave-one-out, full ranking, 1 epoch, no progress bars."""
    config = {
        "data_path": data_path,
        "checkpoint_dir": os.path.join(str(tmp_path), "saved"),
        "log_wandb": False,
        "show_progress": False,
        "state": "WARNING",
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "MAX_ITEM_LIST_LENGTH": 20,
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["Recall", "NDCG"],
        "topk": [5, 10],
        "valid_metric": "NDCG@10",
        "load_col": {
            "inter": ["user_id", "item_id", "timestamp"],
            "item": ["item_id", "title", "brand"],
        },
        "seed": 2024,
        "reproducibility": True,
    }
    config.update(overrides)
    return config


@pytest.fixture
def tiny_data(tmp_path):
    """``data_path`` of a fresh tiny dataset named ``tiny`` (40 users, 30 items, text)."""
    return write_tiny_dataset(tmp_path / "data")


def load_benchmark(name):
    """``benchmarks/<name>.py`` as a module, importing its sibling scripts as it does when run."""
    import importlib.util
    import sys

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module
