"""Length-bucketed training batches (``length_bucket_batches``): same examples, shorter padding."""

import sys
from collections import Counter

import numpy as np
import pytest
from conftest import tiny_config
from recbole.data.dataloader import TrainDataLoader
from recbole.utils import init_seed

from recbole_genrec.config import Config
from recbole_genrec.data.dataloader import GenPASTrainDataLoader, LengthBucketTrainDataLoader, bucket_order
from recbole_genrec.errors import ConfigError
from recbole_genrec.utils import create_dataset, data_preparation


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest"])


def prepare(data_path, tmp_path, **overrides):
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(data_path, tmp_path, **overrides))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return data_preparation(config, dataset)[0]


def examples(batch):
    seqs, lens, items = batch["item_id_list"].numpy(), batch["item_length"].numpy(), batch["item_id"].numpy()
    return [(tuple(s[:n]), int(i)) for s, n, i in zip(seqs, lens, items)]


def test_bucket_order_is_a_permutation_of_sorted_chunks():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 21, size=1000)
    order = bucket_order(lengths, 32, 4, np.random.default_rng(1))
    assert sorted(order.tolist()) == list(range(1000))  # every example once
    batches = order[: 1000 // 32 * 32].reshape(-1, 32)
    spread = np.ptp(lengths[batches], axis=1).mean()
    random_spread = np.ptp(lengths[rng.permutation(1000)[:992].reshape(-1, 32)], axis=1).mean()
    assert spread < random_spread / 3  # batches hold similar lengths
    # the batch order is shuffled: batch max lengths are not monotone
    assert not np.all(np.diff(lengths[batches].max(1)) >= 0)
    assert np.array_equal(order, bucket_order(lengths, 32, 4, np.random.default_rng(1)))  # seeded
    assert not np.array_equal(order, bucket_order(lengths, 32, 4, np.random.default_rng(2)))


def test_bucketed_loader_yields_recbole_examples_once_with_less_padding(tiny_data, tmp_path):
    plain = prepare(tiny_data, tmp_path, train_batch_size=16)
    assert type(plain) is TrainDataLoader  # off by default
    bucketed = prepare(tiny_data, tmp_path, train_batch_size=16, length_bucket_batches=4)
    assert isinstance(bucketed, LengthBucketTrainDataLoader) and len(bucketed) == len(plain)
    plain_batches, epoch0 = list(plain), list(bucketed)
    assert Counter(sum(map(examples, epoch0), [])) == Counter(sum(map(examples, plain_batches), []))

    def padded(batches):
        return sum(int(b["item_length"].max()) * len(b) for b in batches)

    assert padded(epoch0) < padded(plain_batches)
    epoch1 = list(bucketed)  # a new order each epoch
    assert [examples(b) for b in epoch1] != [examples(b) for b in epoch0]
    bucketed.set_epoch(0)  # resuming reproduces an epoch
    assert [examples(b) for b in bucketed] == [examples(b) for b in epoch0]


def test_genpas_pairs_can_be_bucketed(tiny_data, tmp_path):
    keys = dict(train_batch_size=16, train_sampler="MT", genpas_mode="enumerate")
    plain = prepare(tiny_data, tmp_path, **keys)
    bucketed = prepare(tiny_data, tmp_path, length_bucket_batches=4, **keys)
    assert isinstance(bucketed, GenPASTrainDataLoader)
    a, b = list(plain), list(bucketed)
    assert Counter(sum(map(examples, a), [])) == Counter(sum(map(examples, b), []))
    spread = np.mean([np.ptp(x["item_length"].numpy()) for x in b])
    assert spread < np.mean([np.ptp(x["item_length"].numpy()) for x in a])


def test_negative_bucket_count_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="length_bucket_batches must be >= 0"):
        prepare(tiny_data, tmp_path, length_bucket_batches=-1)
