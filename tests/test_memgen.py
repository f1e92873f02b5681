"""Memorization/generalization labels (spec memgen.md §2, §3, §8) and the predictions files they consume."""

import itertools
import json
import os

import numpy as np
import pytest
from conftest import tiny_config

from recbole_genrec.analysis import memgen
from recbole_genrec.analysis.memgen import (
    GEN,
    MEM,
    SUB,
    TYPES,
    UNCAT,
    Instances,
    Sequences,
    compute_labels,
    label_items,
    label_tokens,
)
from recbole_genrec.analysis.predictions import (
    PredictionsError,
    check_compatible,
    load_predictions,
    write_predictions,
)

FIXTURE_TRAIN = [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10]]
FIXTURE = [  # spec §2, checked there by running the official categorizer
    ([9, 1, 2], {"memorization"}),
    ([9, 1, 3], {"generalization", "transitivity_1", "substitutability_2"}),
    ([5, 4], {"generalization", "symmetry_1"}),
    ([3, 1], {"generalization", "2nd-symmetry_1"}),
    ([11, 12], {"uncategorized"}),
    ([6, 99, 7], {"generalization", "substitutability_2", "2nd-symmetry_2"}),
    ([10, 6], {"uncategorized"}),
    ([30, 31, 32, 10, 6], {"generalization", "symmetry_4", "2nd-symmetry_2"}),
    ([1, 20, 21, 22, 3], {"generalization", "substitutability_4", "transitivity_4"}),
    ([7, 30, 31, 32, 33, 9], {"uncategorized"}),
]


def instances(seqs):
    return Instances.from_lists([s[:-1] for s in seqs], [s[-1] for s in seqs])


def test_spec_fixture_exactly():
    labels = label_items(Sequences.from_lists(FIXTURE_TRAIN), instances([s for s, _ in FIXTURE]), max_hop=4, n_items=100)
    assert labels.label_sets() == [expected for _, expected in FIXTURE]


# ---------------------------------------------------------------- a plain reference of spec §2
def reference_labels(train, test_seqs, H):
    """Set-based, one instance at a time: the spec's rules written as directly as possible."""
    T = {h: set() for h in range(1, H + 1)}
    for s in train:
        for i, j in itertools.combinations(range(len(s)), 2):
            for h in range(j - i, H + 1):
                T[h].add((s[i], s[j]))
    succ = lambda h, a: {b for (x, b) in T[h] if x == a}  # noqa: E731
    pred = lambda h, b: {a for (a, y) in T[h] if y == b}  # noqa: E731
    tests = {
        "substitutability": lambda u, v, h: v in succ(h, u),
        "symmetry": lambda u, v, h: u in succ(h, v),
        "transitivity": lambda u, v, h: bool(succ(h, u) & pred(h, v)),
        "2nd-symmetry": lambda u, v, h: bool(succ(h, v) & pred(h, u) or succ(h, v) & succ(h, u) or pred(h, v) & pred(h, u)),
    }
    out = []
    for seq in test_seqs:
        hist, v = seq[:-1], seq[-1]
        if hist and (hist[-1], v) in T[1]:
            out.append({"memorization"})
            continue
        labels = set()
        for name, test in tests.items():
            for h in range(2 if name == "substitutability" else 1, H + 1):
                if len(hist) < h:
                    continue
                if any(test(u, v, h) for u in hist[-h:]):
                    labels.add(f"{name}_{h}")
                    break
        out.append(labels | {"generalization"} if labels else {"uncategorized"})
    return out


def random_data(seed, n_items=25, n_train=40, n_test=120):
    rng = np.random.default_rng(seed)
    train = [rng.integers(1, n_items, rng.integers(2, 9)).tolist() for _ in range(n_train)]
    test = [rng.integers(1, n_items + 3, rng.integers(1, 8)).tolist() for _ in range(n_test)]  # some unseen items
    return train, test


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_labels_equal_the_plain_reference(seed):
    train, test = random_data(seed)
    got = label_items(Sequences.from_lists(train), instances(test), max_hop=4, n_items=40).label_sets()
    assert got == reference_labels(train, test, 4)


def test_labels_are_well_defined_and_covering():
    """Spec §8.1: one master label each, counts sum to N, types only on generalization, no substitutability_1."""
    train, test = random_data(7, n_train=60, n_test=400)
    labels = label_items(Sequences.from_lists(train), instances(test), max_hop=4, n_items=40)
    counts = np.bincount(labels.master, minlength=3)
    assert counts.sum() == len(test) and (counts > 0).all()
    has_type = (labels.type_hop > 0).any(1)
    assert np.array_equal(has_type, labels.master == GEN)
    assert labels.type_hop.shape[1] == len(TYPES)  # one slot per type: each type at most once
    assert not (labels.type_hop[:, SUB] == 1).any()
    assert (labels.type_hop[labels.master != GEN] == 0).all()
    empty = Instances.from_lists([[]], [3])
    assert label_items(Sequences.from_lists(train), empty, 4, n_items=40).master.tolist() == [UNCAT]


def test_monotone_in_max_hop():
    """Spec §8.3: raising H only adds type labels at the new hops; memorization does not depend on H."""
    train, test = random_data(3, n_train=50, n_test=300)
    seqs, inst = Sequences.from_lists(train), instances(test)
    previous = None
    for H in range(1, 7):
        labels = label_items(seqs, inst, H, n_items=40)
        if previous is not None:
            assert np.array_equal(labels.master == MEM, previous.master == MEM)
            assert not ((previous.master == GEN) & (labels.master == UNCAT)).any()
            old = previous.type_hop
            kept = old > 0
            assert np.array_equal(labels.type_hop[:, : old.shape[1]][kept], old[kept])  # same minimum hops
            new = (labels.type_hop > 0) & ~kept
            assert (labels.type_hop[new] == H).all()  # only at the new hop
        previous = labels


def unique_codes(n_items, levels=(3, 3, 3), seed=0):
    """Random 3-level codes plus a collision level that makes every ID unique (row 0 = padding)."""
    rng = np.random.default_rng(seed)
    base = np.stack([rng.integers(0, s, n_items) for s in levels], 1)
    _, inverse = np.unique(base, axis=0, return_inverse=True)
    collision = np.zeros(n_items, dtype=np.int64)
    for key in np.unique(inverse):
        idx = np.flatnonzero(inverse.reshape(-1) == key)
        collision[idx] = np.arange(len(idx))
    codes = np.concatenate([base, collision[:, None]], 1)
    codes[0] = 0
    return codes


def test_token_labels_monotone_in_n_and_full_id_equals_item_labels():
    """Spec §3/§8.3: memorizable at n implies at n-1; n = L: hop 1 = memorization, any hop = memorization ∪ substitutability."""
    train, test = random_data(5, n_train=60, n_test=400)
    seqs, inst = Sequences.from_lists(train), instances(test)
    codes = unique_codes(40)
    H = 4
    tok = label_tokens(seqs, inst, codes, H)
    item = label_items(seqs, inst, H, n_items=40)
    seen = tok.prefix_hop > 0
    assert not (seen[:, 1:] & ~seen[:, :-1]).any()
    assert (tok.prefix_hop[:, :-1][seen[:, 1:]] <= tok.prefix_hop[:, 1:][seen[:, 1:]]).all()
    assert np.array_equal(tok.token_cat, seen.sum(1))  # well defined: the largest memorizable n
    assert np.array_equal(tok.prefix_hop[:, -1] == 1, item.master == MEM)
    long = inst.length >= H
    mem_or_sub = (item.master == MEM) | (item.type_hop[:, SUB] > 0)
    assert long.sum() > 50 and np.array_equal(seen[long, -1], mem_or_sub[long])
    assert (tok.token_cat[item.master == MEM] == codes.shape[1]).all()


def test_token_labels_toy():
    # items 1,2 share prefix (0,); 3 has prefix (1,); train 1 -> 3; test 2 -> 3 is 1-gram (and 0 2-gram...) memorizable
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 0]])
    tok = label_tokens(Sequences.from_lists([[1, 3]]), instances([[2, 3], [3, 1], [9 % 4, 1, 3]]), codes, 2)
    assert tok.prefix_hop.tolist() == [[1, 0], [0, 0], [1, 1]]
    assert tok.token_cat.tolist() == [1, 0, 2]


# ---------------------------------------------------------------- RecBole's sequences, leakage, cache
@pytest.fixture
def tiny_splits(tiny_data, tmp_path):
    from recbole_genrec.config import Config

    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path))
    return config, memgen.load_splits(config), tiny_data


def raw_sequences(data_path):
    rows = [line.split("\t") for line in open(os.path.join(data_path, "tiny", "tiny.inter")).read().splitlines()[1:]]
    seqs = {}
    for user, item, t in rows:
        seqs.setdefault(user, []).append((float(t), item))
    return {u: [i for _, i in sorted(s)] for u, s in seqs.items()}


def test_train_sequences_are_the_train_split_exactly(tiny_splits):
    """s_1..s_{L-2} of every user (validation and test targets never enter), full length, RecBole's ids."""
    config, (train, valid, test), data_path = tiny_splits
    ds = train._dataset
    seqs = memgen.train_sequences(ds)
    raw = raw_sequences(data_path)
    tokens = ds.field2id_token[ds.iid_field]
    got = {ds.field2id_token[ds.uid_field][u]: [tokens[i] for i in s] for u, s in zip(seqs.users, seqs.to_lists())}
    assert got == {u: s[:-2] for u, s in raw.items()}
    test_inst = memgen.eval_instances(test)
    assert {ds.field2id_token[ds.uid_field][u]: tokens[t] for u, t in zip(test_inst.user, test_inst.target)} == {
        u: s[-1] for u, s in raw.items()
    }


def test_leakage_regression_full_sequences_raise_memorization(tiny_splits):
    """Spec §8.2: T_h from the full sequences (wrongly including valid/test targets) gives other, higher-memorization shares."""
    config, (train, valid, test), _ = tiny_splits
    seqs = memgen.train_sequences(train._dataset)
    val, tst = memgen.eval_instances(valid), memgen.eval_instances(test)
    by_user = dict(zip(seqs.users.tolist(), seqs.to_lists()))
    vt = dict(zip(val.user.tolist(), val.target.tolist()))
    tt = dict(zip(tst.user.tolist(), tst.target.tolist()))
    full = Sequences.from_lists([by_user[u] + [vt[u], tt[u]] for u in by_user])
    n = train._dataset.item_num
    right = label_items(seqs, tst, 4, n_items=n)
    leaky = label_items(full, tst, 4, n_items=n)
    assert (leaky.master == MEM).mean() > (right.master == MEM).mean()
    assert (leaky.master == MEM).all()  # each test transition is then in T_1 by construction


def test_label_cache_hit_and_corrupt_file_rebuilt(tmp_path):
    train, test = random_data(1)
    seqs, inst = Sequences.from_lists(train), {"test": instances(test)}
    cache = str(tmp_path / "memgen")
    first, info = compute_labels(seqs, inst, 4, unique_codes(40), n_items=40, cache_dir=cache)
    again, info2 = compute_labels(seqs, inst, 4, unique_codes(40), n_items=40, cache_dir=cache)
    assert not info["hit"] and info2["hit"] and info2["key"] == info["key"]
    assert np.array_equal(first["test"]["item"].type_hop, again["test"]["item"].type_hop)
    assert np.array_equal(first["test"]["token"].prefix_hop, again["test"]["token"].prefix_hop)
    _, other = compute_labels(seqs, inst, 3, unique_codes(40), n_items=40, cache_dir=cache)
    assert other["key"] != info["key"] and not other["hit"]  # another max hop, another entry
    with open(info["path"], "r+b") as f:
        f.truncate(100)
    rebuilt, info3 = compute_labels(seqs, inst, 4, unique_codes(40), n_items=40, cache_dir=cache)
    assert not info3["hit"] and np.array_equal(rebuilt["test"]["item"].master, first["test"]["item"].master)
    assert [n for n in os.listdir(cache) if n.startswith(".tmp")] == []


# ---------------------------------------------------------------- predictions files
def fake_predictions(path, model="SASRec", dataset="tiny", split_targets=None, mapping="m1", all_items=True):
    split_targets = split_targets or {"valid": [3, 4, 5], "test": [4, 5, 6]}
    collected = {}
    for split, target in split_targets.items():
        m = len(target)
        collected[split] = {"user": np.arange(1, m + 1), "target": np.array(target),
                            "items": np.tile(np.arange(1, 13), (m, 1)), "scores": -np.tile(np.arange(12.0), (m, 1)),
                            "msp": np.full(m, 0.2 if all_items else np.nan)}
    return load_predictions(write_predictions(str(path), collected, model, dataset, mapping, all_items))


def test_predictions_from_other_datasets_splits_or_targets_are_refused(tmp_path):
    a = fake_predictions(tmp_path / "a.npz")
    b = fake_predictions(tmp_path / "b.npz", model="TIGER", all_items=False)
    assert check_compatible([a, b]) == ["test", "valid"]
    other_ds = fake_predictions(tmp_path / "c.npz", dataset="office")
    with pytest.raises(PredictionsError, match="different datasets"):
        check_compatible([a, other_ds])
    with pytest.raises(PredictionsError, match="for dataset 'office', not 'tiny'"):
        check_compatible([other_ds], dataset="tiny")
    other_targets = fake_predictions(tmp_path / "d.npz", split_targets={"valid": [3, 4, 5], "test": [4, 5, 7]})
    with pytest.raises(PredictionsError, match=r"\(test split\) hold other instances or targets"):
        check_compatible([a, other_targets])
    # the valid instances saved as 'test' (another split): same ids and targets, other split name
    swapped = fake_predictions(tmp_path / "e.npz", split_targets={"test": [3, 4, 5]})
    with pytest.raises(PredictionsError, match="other instances or targets"):
        check_compatible([fake_predictions(tmp_path / "f.npz", split_targets={"test": [4, 5, 6]}), swapped])
    with pytest.raises(PredictionsError, match="different item-id mappings"):
        check_compatible([a, fake_predictions(tmp_path / "g.npz", mapping="m2")])
    with pytest.raises(PredictionsError, match="does not exist"):
        load_predictions(str(tmp_path / "missing.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PredictionsError, match="corrupt"):
        load_predictions(str(tmp_path / "bad.npz"))


def test_cli_refuses_predictions_of_another_dataset(tiny_splits, tmp_path, capsys):
    config, _, data_path = tiny_splits
    a = fake_predictions(tmp_path / "a.npz", dataset="office")
    b = fake_predictions(tmp_path / "b.npz", dataset="office")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps({k: v for k, v in tiny_config(data_path, tmp_path).items()}))
    with pytest.raises(PredictionsError, match="item-id mapping|for dataset 'office'"):
        memgen.main(["--dataset=tiny", f"--config_files={cfg}", "--predictions", a.path, b.path, f"--out={tmp_path}/o"])


@pytest.mark.slow
def test_labelling_beauty_scale_takes_seconds():
    """22k users x 12k items, random 5-core-like sequences: labels (item + token) in well under a minute."""
    import time

    rng = np.random.default_rng(0)
    n_users, n_items = 22363, 12102
    lengths = rng.integers(5, 15, n_users)
    seqs = Sequences.from_lists([rng.integers(1, n_items, L).tolist() for L in lengths])
    test = Instances.from_lists([rng.integers(1, n_items, L - 1).tolist()[-20:] for L in lengths], rng.integers(1, n_items, n_users))
    start = time.perf_counter()
    label_items(seqs, test, 4, n_items=n_items)
    label_tokens(seqs, test, unique_codes(n_items, (256, 256, 256)), 4)
    assert time.perf_counter() - start < 60


def test_tradeoff_support_counts_and_purity_toy():
    """§4.3: C_n counts training position pairs within the window; phi/psi are distance-1 ratios."""
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 1]])  # items 1, 2 share their 1-prefix; so do 3, 4
    seqs = Sequences.from_lists([[1, 2, 3], [1, 2], [1, 4]])
    inst = instances([[1, 3], [1, 2]])  # 1 -> 3: distance 2 only (not memorization); 1 -> 2: memorization
    item = label_items(seqs, inst, 4, n_items=5)
    assert item.master.tolist() == [GEN, MEM]
    ndcg = {"A": np.array([0.0, 1.0]), "B": np.array([0.5, 0.25])}
    rows = memgen.support_bins(seqs, inst, item, codes, ndcg, window=4, depths=(1, 2), n_bins=1)
    # n = 1: prefix pair (0 -> 1): position pairs 1->3, 2->3, 1->4 = 3; n = 2: exact 1 -> 3 = 1
    assert [(r["n"], r["C_n"], r["N"], r["Δ"]) for r in rows] == [(1, "C=0", 0, rows[0]["Δ"]), (1, "3-3", 1, 0.5),
                                                                 (2, "C=0", 0, rows[2]["Δ"]), (2, "1-1", 1, 0.5)]
    grid = memgen.purity_grid(seqs, inst, item, codes, ndcg, prefix=1, n_bins=1)
    # phi(1 -> 2) = 2 of the 3 distance-1 moves from item 1; psi on 1-prefixes: the 4 moves from
    # prefix 0 are 1->2, 2->3, 1->2, 1->4, of which 2 go to prefix 0 (1->2 twice): 0.5
    assert grid[0]["phi bin"] == "1: 0.667-0.667"
    assert list(grid[0])[1] == "psi 1 (0.50-0.50)" and grid[0]["N1"] == 1 and grid[0]["psi 1 (0.50-0.50)"] == -0.75
