"""GenPASTrainDataLoader: RecBole layout, exact presets, resampling, short users, SASRec training."""

import sys
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import tiny_config, write_tiny_dataset
from recbole.data.dataloader import TrainDataLoader
from recbole.utils import init_seed

from recbole_genrec.config import Config
from recbole_genrec.data.dataloader import GenPASTrainDataLoader, TrainSequences
from recbole_genrec.trainer import trainer_class
from recbole_genrec.utils import create_dataset, data_preparation, get_model


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """Config reads --key=value from sys.argv (as RecBole does): keep pytest's flags out."""
    monkeypatch.setattr(sys, "argv", ["pytest"])


def prepare(data_path, tmp_path, model="SASRec", **overrides):
    config = Config(model=model, dataset="tiny", config_dict=tiny_config(data_path, tmp_path, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, dataset, train, valid, test


@pytest.mark.parametrize("name", ["default", " Default ", None])
def test_the_default_sampler_in_any_spelling_keeps_recboles_loader(tiny_data, tmp_path, name):
    # one rule decides (sampler_spec_from_config): a spelling it reads as the default is never a GenPAS loader
    _, _, train, _, _ = prepare(tiny_data, tmp_path, train_sampler=name)
    assert type(train) is TrainDataLoader


def rows_of(inter, fields):
    """Each example as a hashable tuple over ``fields`` (lists as tuples)."""
    cols = [inter[f].numpy() for f in fields]
    return [tuple(tuple(c[k].tolist()) if c.ndim > 1 else c[k].item() for c in cols) for k in range(len(inter))]


def all_batches(loader):
    from recbole.data.interaction import cat_interactions

    return cat_interactions(list(loader))


@pytest.mark.parametrize("max_len", [20, 3])
def test_mt_enumerate_reproduces_recbole_training_interactions(tiny_data, tmp_path, max_len):
    _, _, plain, _, _ = prepare(tiny_data, tmp_path, MAX_ITEM_LIST_LENGTH=max_len)
    assert type(plain) is TrainDataLoader  # train_sampler: default keeps RecBole's loader
    config, _, train, _, _ = prepare(
        tiny_data, tmp_path, MAX_ITEM_LIST_LENGTH=max_len, train_sampler="MT", genpas_mode="enumerate"
    )
    assert isinstance(train, GenPASTrainDataLoader)
    first = next(iter(train))
    assert list(first.columns) == list(next(iter(plain)).columns)  # same fields, same order
    ours, theirs = all_batches(train), all_batches(plain)  # user/item features joined in both
    for f in theirs.columns:
        assert ours[f].dtype == theirs[f].dtype and ours[f].shape[1:] == theirs[f].shape[1:], f
    fields = sorted(f for f in theirs.columns if f not in ("title", "brand"))
    assert torch.equal(ours["title"][ours["item_id"].argsort()], theirs["title"][theirs["item_id"].argsort()])
    assert Counter(rows_of(ours, fields)) == Counter(rows_of(theirs, fields))  # pair for pair
    assert len(train) == len(plain)


def test_lt_enumerate_is_one_full_prefix_pair_per_user(tiny_data, tmp_path):
    _, _, plain, _, _ = prepare(tiny_data, tmp_path)
    _, _, train, _, _ = prepare(tiny_data, tmp_path, train_sampler="LT", genpas_mode="enumerate")
    ours = all_batches(train)
    theirs = plain._dataset.inter_feat
    uid = ours["user_id"].numpy()
    assert len(uid) == len(set(uid.tolist())) == len(set(theirs["user_id"].numpy().tolist()))
    # RecBole's last train example of each user is exactly LT's pair
    last = {}
    for row in rows_of(theirs, ["user_id", "item_id", "item_id_list", "item_length"]):
        last[row[0]] = row
    assert sorted(rows_of(ours, ["user_id", "item_id", "item_id_list", "item_length"])) == sorted(last.values())


def test_sampled_batches_have_recbole_layout_and_follow_the_sequences(tiny_data, tmp_path):
    _, _, train, _, _ = prepare(
        tiny_data, tmp_path, MAX_ITEM_LIST_LENGTH=4, train_sampler="genpas",
        genpas_alpha=0.5, genpas_beta="inf", genpas_gamma=0,
    )
    seqs = train.sequences.seqs
    row_of = {int(u): k for k, u in enumerate(seqs.user_ids)}
    batch = next(iter(train))
    assert len(batch) == 64
    lst, length = batch["item_id_list"].numpy(), batch["item_length"].numpy()
    assert np.all((length >= 1) & (length <= 4))
    for k in range(len(batch)):
        items = seqs.items[seqs.offsets[row_of[int(batch["user_id"][k])]] : seqs.offsets[row_of[int(batch["user_id"][k])] + 1]]
        n = len(items)
        assert int(batch["item_id"][k]) == items[-1]  # beta = inf: the last target
        assert lst[k, : length[k]].tolist() == items[n - 1 - length[k] : n - 1].tolist()
        assert np.all(lst[k, length[k]:] == 0)  # right 0-padding
        ts = batch["timestamp_list"][k].numpy()
        assert np.all(ts[length[k]:] == 0)
        assert ts[: length[k]].tolist() == sorted(ts[: length[k]].tolist())  # chronological
        assert float(batch["timestamp"][k]) > ts[length[k] - 1]
    # pairs per epoch and len() follow genpas_pairs_per_epoch
    assert train.n_pairs == seqs.n_mt_pairs() and len(train) == -(-train.n_pairs // 64)


def test_epochs_are_resampled_and_reproducible(tiny_data, tmp_path):
    kw = dict(train_sampler="SW", genpas_pairs_per_epoch="0.5x")
    _, _, a, _, _ = prepare(tiny_data, tmp_path, **kw)
    _, _, b, _, _ = prepare(tiny_data, tmp_path, **kw)
    a0, a1 = all_batches(a), all_batches(a)
    b0 = all_batches(b)
    assert len(a0) == a.n_pairs == round(0.5 * a.sequences.seqs.n_mt_pairs())
    assert torch.equal(a0["item_id_list"], b0["item_id_list"])  # same (seed, epoch)
    assert not torch.equal(a0["item_id_list"], a1["item_id_list"])  # new draw each epoch
    b.set_epoch(1)
    assert torch.equal(all_batches(b)["item_id_list"], a1["item_id_list"])
    _, _, c, _, _ = prepare(tiny_data, tmp_path, seed=7, **kw)
    assert not torch.equal(all_batches(c)["item_id_list"], a0["item_id_list"])


def test_negatives_are_drawn_for_sampled_targets(tiny_data, tmp_path):
    _, _, train, _, _ = prepare(
        tiny_data, tmp_path, train_sampler="LT", loss_type="BPR",
        train_neg_sample_args={"distribution": "uniform", "sample_num": 1},
    )
    batch = next(iter(train))
    assert "neg_item_id" in batch and batch["neg_item_id"].shape == batch["item_id"].shape
    assert torch.all(batch["neg_item_id"] != batch["item_id"])


def test_users_with_fewer_than_two_training_items_have_no_pair(tmp_path):
    """Documented: users whose training part has < 2 items get no training pair (as in RecBole);
    with lengths 1..4 under leave-one-out some users have none, the others are sampled as usual."""
    data = write_tiny_dataset(tmp_path / "short", n_users=30, min_len=1, max_len=4, seed=3)
    _, dataset, plain, _, _ = prepare(data, tmp_path)
    _, _, train, _, _ = prepare(data, tmp_path, train_sampler="genpas", genpas_alpha=-2)
    seqs = train.sequences.seqs
    assert np.all(seqs.lengths >= 2)
    in_train = set(plain._dataset.inter_feat["user_id"].numpy().tolist())
    assert set(seqs.user_ids.tolist()) == in_train
    assert len(in_train) < dataset.user_num - 1  # some users really have no pair
    sampled = set(all_batches(train)["user_id"].numpy().tolist())
    assert sampled <= in_train


def test_genpas_without_sequential_data_is_a_clear_error(tiny_data, tmp_path):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path))
    dataset = create_dataset(config)
    train_ds, _, _ = dataset.build()
    with pytest.raises(ValueError, match="train_sampler"):  # config says default
        GenPASTrainDataLoader(config, train_ds, None, shuffle=True)
    original = train_ds.inter_feat
    corrupt = original[np.arange(len(original))]
    corrupt["item_id_list"][5, 0] += 1  # not a prefix of one chronological sequence any more
    train_ds.inter_feat = corrupt
    with pytest.raises(ValueError, match="could not rebuild"):
        TrainSequences(train_ds)
    train_ds.inter_feat = original[np.array([], dtype=np.int64)]
    with pytest.raises(ValueError, match="train split is empty"):
        TrainSequences(train_ds)


def _train_one_epoch(config, dataset, train, valid, test):
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train._dataset).to(config["device"])
    trainer = trainer_class(config)(config, model)
    best, _ = trainer.fit(train, valid, saved=False, show_progress=False)
    result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    return best, result


def test_sasrec_trains_one_epoch_with_genpas(tiny_data, tmp_path):
    config, dataset, train, valid, test = prepare(
        tiny_data, tmp_path, train_sampler="genpas", genpas_alpha=1, genpas_beta=1, genpas_gamma=-1,
        hidden_size=16, inner_size=32, n_layers=1, n_heads=1,
    )
    best, result = _train_one_epoch(config, dataset, train, valid, test)
    assert np.isfinite(best) and 0 <= result["ndcg@10"] <= 1


def test_tiger_trains_one_epoch_with_genpas(tiny_data, tmp_path):
    """run_recbole_genrec -> SemanticIDDataset (sid_file) -> TIGER fed by GenPAS pairs -> test metrics."""
    import json
    import os

    from recbole_genrec.quick_start import run_recbole_genrec

    sid_path = os.path.join(tiny_data, "tiny", "tiny.sid-genpas.json")
    with open(sid_path, "w") as f:
        json.dump({f"i{i}": [f"<a_{i // 9}>", f"<b_{i // 3 % 3}>", f"<c_{i % 3}>"] for i in range(30)}, f)
    keys = {
        "n_layers": 1, "d_model": 32, "d_ff": 64, "n_heads": 2, "d_kv": 16, "beam_size": 10,
        "valid_beam_size": 10, "warmup_steps": 2, "sid_file": sid_path,
        "train_sampler": "genpas", "genpas_alpha": 0, "genpas_beta": 1, "genpas_gamma": -1,
    }
    out = run_recbole_genrec(model="TIGER", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys),
                             saved=False)
    assert np.isfinite(out["best_valid_score"]) and 0 <= out["test_result"]["ndcg@10"] <= 1


def test_genpas_yaml_documents_every_key_with_a_default():
    import os

    import yaml

    path = os.path.join(os.path.dirname(__file__), "..", "recbole_genrec", "properties", "genpas.yaml")
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    assert all("#" in ln for ln in lines), [ln for ln in lines if "#" not in ln]
    with open(path) as f:
        keys = yaml.safe_load(f)
    assert keys["train_sampler"] == "default" and keys["genpas_mode"] == "sample"
    assert keys["genpas_pairs_per_epoch"] == "mt" and keys["genpas_top_k"] == 5
