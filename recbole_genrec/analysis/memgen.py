"""Memorization vs generalization labels for any two RecBole models (spec: memgen.md).

    python -m recbole_genrec.analysis.memgen --dataset=office \
        --config_files=properties/dataset/office.yaml --predictions A.npz B.npz [--out DIR]

Every validation/test instance (history x_1..x_n, target v) of RecBole's split is labelled
by the capability its correct prediction needs (spec §2), from **the training sequences
RecBole gives the models** (:func:`train_sequences`: the train split's item sequences, in
full, never a validation or test target), then two models' saved predictions
(:mod:`recbole_genrec.analysis.predictions`) are compared per label, at the token level
(§3) and fused (:mod:`recbole_genrec.analysis.ensemble`, §4).

Labels (``ItemLabels``):

* ``master`` in {0 memorization, 1 generalization, 2 uncategorized}: memorization iff
  ``(x_n, v)`` is in T_1; else generalization iff at least one type label; else
  uncategorized (also for an empty history, spec [R]).
* ``type_hop [M, 4]``: the minimum hop of substitutability, symmetry, transitivity and
  2nd-order symmetry (0 = absent), tried for h = h0..H (h0 = 2 for substitutability, else
  1) with u in the last h history items and every leg in T_h (the official code's
  reading, spec §2); hop h is skipped when the history is shorter than h (code artifact,
  replicated). The intermediate item x may equal u or v (as the code; no strict mode).

Token labels (``TokenLabels``, spec §3): ``prefix_hop [M, L]`` = the minimum hop h <= H
at which some u among the last h history items (only existing distances, no skip) has
``(P_n(u), P_n(v))`` in T^n_h (0 = unseen), for n = 1..L; ``token_cat`` = the largest n
with a hop, 0 = unseen.

Choices where the spec is silent (documented here, used everywhere):

* Histories are those of RecBole's eval loaders (truncated to ``MAX_ITEM_LIST_LENGTH``);
  the labels need only the last ``max_hop`` items, so ``max_hop`` must not exceed it.
* T_h is built from every position pair at distance <= h of the full (untruncated) train
  sequences: RecBole's train instances are every prefix of a user's train sequence, so
  the sequence is the first instance's history item followed by every train target.
* Computation: T_h as sparse boolean item x item matrices (scipy CSR); "u -> x -> v
  exists" is a row-wise product of two CSR row selections, so a whole split is labelled
  with a handful of sparse operations per hop (beauty: benchmarks/results/memgen_labelling_speed.md).
* Cache: one ``.npz`` per (train sequences, eval instances, max hop, item codes) content
  hash under ``<checkpoint_dir>/memgen/``, written atomically with the semantic-ID cache's
  helpers (``recbole_genrec.tokenizer.cache``); a corrupt file is rebuilt.
* The per-category table has one row per category in the paper's column order
  (memorization, generalization, substitutability_2..H, symmetry_1..H, transitivity_1..H,
  2nd-symmetry_1..H, uncategorized) and the statistics as columns.
* Models are scored per instance from their saved top-N lists: Recall@10 = target in the
  top 10, NDCG@10 = 1/log2(rank+1) (one target; equal to RecBole's metrics).
* §4.3 trade-offs (with item codes): support counts C_n count position pairs with multiplicity; φ and
  ψ count distance-1 transitions with multiplicity; bins are equal-count by stable rank. The §4.4
  codebook study (retraining TIGER per codebook) is not implemented.
"""

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from recbole_genrec.errors import ConfigError, UserError
from recbole_genrec.tokenizer.cache import array_digest, digest, load_entry, save_entry

MASTER = ("memorization", "generalization", "uncategorized")
MEM, GEN, UNCAT = 0, 1, 2
TYPES = ("substitutability", "symmetry", "transitivity", "2nd-symmetry")
SUB, SYM, TRANS, SYM2 = 0, 1, 2, 3
LABEL_VERSION = 1


# --------------------------------------------------------------------------- sequences
@dataclass
class Sequences:
    """Item sequences as one flat array: sequence ``k`` is ``items[offsets[k]:offsets[k+1]]``
    (``users[k]``: its RecBole user id, when known)."""

    items: np.ndarray
    offsets: np.ndarray
    users: Optional[np.ndarray] = None

    @classmethod
    def from_lists(cls, seqs):
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if seqs else np.zeros(0, np.int64)
        return cls(items, offsets)

    def __len__(self):
        return len(self.offsets) - 1

    def to_lists(self):
        return [self.items[a:b].tolist() for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def seq_ids(self):
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def digest(self):
        return digest({"items": self.items, "offsets": self.offsets})


def train_sequences(train_dataset):
    """The full train item sequence of every user, from RecBole's (augmented) train split.

    RecBole's train instances of a user are (s_1..s_{j-1} -> s_j) for j = 2..L-2, in
    order; the sequence is s_1 (the first instance's history) followed by every target.
    Raises when the instances are not in that order (the reconstruction would be wrong).
    """
    inter = train_dataset.inter_feat
    uid = inter[train_dataset.uid_field].numpy()
    target = inter[train_dataset.iid_field].numpy()
    hist = inter[train_dataset.item_id_list_field].numpy()
    length = inter[train_dataset.item_list_length_field].numpy()
    if len(uid) == 0:
        return Sequences.from_lists([])
    first = np.r_[True, uid[1:] != uid[:-1]]
    if len(np.unique(uid[first])) != int(first.sum()) or not np.all(length[first] == 1):
        raise ValueError("train split rows are not grouped by user in sequence order; cannot rebuild the sequences")
    last_hist = hist[np.arange(len(uid)), length - 1]
    if not np.all(last_hist[~first] == target[np.flatnonzero(~first) - 1]):
        raise ValueError("train split rows are not in sequence order; cannot rebuild the sequences")
    starts = np.flatnonzero(first)
    # per user: [hist[first row, 0]] + targets of its rows, so user k's sequence starts k items after its first row
    items = np.insert(target, starts, hist[starts, 0]).astype(np.int64)
    offsets = (np.r_[starts, len(uid)] + np.arange(len(starts) + 1)).astype(np.int64)
    return Sequences(items, offsets, uid[starts])


@dataclass
class Instances:
    """Evaluation instances: ``user [M]``, ``target [M]``, ``history [M, T]`` (oldest first,
    right-padded with 0, RecBole's layout) and ``length [M]``."""

    user: np.ndarray
    target: np.ndarray
    history: np.ndarray
    length: np.ndarray

    @classmethod
    def from_lists(cls, histories, targets, users=None):
        lengths = np.array([len(h) for h in histories], np.int64)
        hist = np.zeros((len(histories), max(int(lengths.max(initial=0)), 1)), dtype=np.int64)
        for i, h in enumerate(histories):
            hist[i, : len(h)] = h
        users = np.arange(len(histories)) if users is None else np.asarray(users)
        return cls(users.astype(np.int64), np.asarray(targets, np.int64), hist, lengths)

    def __len__(self):
        return len(self.target)

    def at_distance(self, d):
        """``[M]`` the history item at distance d (d = 1: last), 0 where the history is shorter."""
        idx = self.length - d
        ok = idx >= 0
        out = np.zeros(len(self), dtype=np.int64)
        out[ok] = self.history[np.flatnonzero(ok), idx[ok]]
        return out

    def digest(self):
        return digest({"user": self.user, "target": self.target, "history": self.history, "length": self.length})


def eval_instances(eval_data):
    """The instances of a RecBole full-sort eval loader, in its order (= the predictions' order)."""
    dataset = eval_data._dataset
    fields = (dataset.uid_field, dataset.iid_field, dataset.item_id_list_field, dataset.item_list_length_field)
    batches = [[batch[0][field].numpy() for field in fields] for batch in eval_data]
    return Instances(*(np.concatenate(parts).astype(np.int64) for parts in zip(*batches)))


# --------------------------------------------------------------------------- transitions
def distance_pairs(seqs, max_distance):
    """``[(a, b), ...]`` per distance d = 1..max_distance: arrays of item pairs (a before b at distance d)."""
    sid = seqs.seq_ids()
    out = []
    for d in range(1, max_distance + 1):
        same = np.flatnonzero(sid[:-d] == sid[d:]) if len(sid) > d else np.zeros(0, np.int64)
        out.append((seqs.items[same], seqs.items[same + d]))
    return out


class TransitionSets:
    """Cumulative T_1 ⊆ ... ⊆ T_H as sparse boolean matrices ``succ[h]`` (rows a, cols b) and
    ``pred[h]`` (its transpose, rows b)."""

    def __init__(self, seqs, max_hop, n_items):
        self.max_hop, self.n_items = max_hop, n_items
        self.succ, self.pred, self._keys = {}, {}, {}
        rows, cols = [], []
        for h, (a, b) in enumerate(distance_pairs(seqs, max_hop), start=1):
            rows.append(a)
            cols.append(b)
            r, c = np.concatenate(rows), np.concatenate(cols)
            m = sp.csr_matrix((np.ones(len(r), dtype=np.int32), (r, c)), shape=(n_items, n_items))
            m.sum_duplicates()  # also sorts the column indices of every row
            m.data[:] = 1
            self.succ[h] = m
            self.pred[h] = m.T.tocsr()

    def has(self, h, a, b):
        """``[M]`` bool: (a, b) in T_h (binary search in the sorted row-major keys)."""
        if h not in self._keys:
            m = self.succ[h]
            rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
            self._keys[h] = rows * self.n_items + m.indices
        return _member(self._keys[h], np.asarray(a, np.int64) * self.n_items + np.asarray(b, np.int64))

    @staticmethod
    def intersect(x, rows_x, y, rows_y):
        """``[M]`` bool: row ``rows_x[k]`` of ``x`` and row ``rows_y[k]`` of ``y`` share a column."""
        if len(rows_x) == 0:
            return np.zeros(0, dtype=bool)
        return np.asarray(x[rows_x].multiply(y[rows_y]).sum(axis=1)).ravel() > 0


def _type_test(t, ts, h, u, v):
    succ, pred = ts.succ[h], ts.pred[h]
    if t == SUB:  # v in succ_h(u)
        return ts.has(h, u, v)
    if t == SYM:  # u in succ_h(v)
        return ts.has(h, v, u)
    if t == TRANS:  # succ_h(u) ∩ pred_h(v)
        return ts.intersect(succ, u, pred, v)
    # 2nd-order symmetry: v->x->u, common successor, common predecessor
    return (
        ts.intersect(succ, v, pred, u)
        | ts.intersect(succ, v, succ, u)
        | ts.intersect(pred, v, pred, u)
    )


@dataclass
class ItemLabels:
    master: np.ndarray  # [M] int8: MEM / GEN / UNCAT
    type_hop: np.ndarray  # [M, 4] int8: minimum hop per type, 0 = absent

    def label_sets(self):
        """Per instance, the set of label names (as in the spec's fixture)."""
        return [{MASTER[m]} | {f"{TYPES[t]}_{h}" for t, h in enumerate(hops) if h > 0}
                for m, hops in zip(self.master, self.type_hop)]


def label_items(seqs, inst, max_hop=4, n_items=None, transitions=None):
    """Item-level labels of spec §2 for ``inst`` from the transitions of ``seqs``."""
    if n_items is None:
        n_items = int(max(seqs.items.max(initial=0), inst.target.max(initial=0), inst.history.max(initial=0))) + 1
    ts = transitions or TransitionSets(seqs, max_hop, n_items)
    M = len(inst)
    v = inst.target
    last = inst.at_distance(1)
    mem = (inst.length >= 1) & ts.has(1, last, v)
    type_hop = np.zeros((M, len(TYPES)), dtype=np.int8)
    for h in range(1, max_hop + 1):
        base = ~mem & (inst.length >= h)  # the code's short-history skip
        for t in range(len(TYPES)):
            if t == SUB and h < 2:
                continue
            todo = np.flatnonzero(base & (type_hop[:, t] == 0))
            if len(todo) == 0:
                continue
            hit = np.zeros(len(todo), dtype=bool)
            for d in range(1, h + 1):
                u = inst.at_distance(d)[todo]
                hit |= _type_test(t, ts, h, u, v[todo])
            type_hop[todo[hit], t] = h
    master = np.where(mem, MEM, np.where((type_hop > 0).any(1), GEN, UNCAT)).astype(np.int8)
    return ItemLabels(master, type_hop)


# --------------------------------------------------------------------------- token level
def prefix_ids(codes, n):
    """``[n_items]`` id of each item's n-prefix of its semantic ID (equal prefixes, equal ids)."""
    codes = np.asarray(codes)
    _, inverse = np.unique(codes[:, :n], axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


@dataclass
class TokenLabels:
    prefix_hop: np.ndarray  # [M, L] int8: minimum hop of n-gram prefix memorization, 0 = unseen
    token_cat: np.ndarray  # [M] int8: largest memorizable n, 0 = unseen


def label_tokens(seqs, inst, codes, max_hop=4):
    """Token-level prefix n-gram memorization of spec §3 (``codes [n_items, L]``, row 0 padding)."""
    codes = np.asarray(codes)
    L = codes.shape[1]
    pairs = distance_pairs(seqs, max_hop)
    M = len(inst)
    prefix_hop = np.zeros((M, L), dtype=np.int8)
    hist_at = [inst.at_distance(d) for d in range(1, max_hop + 1)]
    exists = [inst.length >= d for d in range(1, max_hop + 1)]
    for n in range(1, L + 1):
        pid = prefix_ids(codes, n)
        n_pref = int(pid.max()) + 1
        pv = pid[inst.target]
        keys_by_h, acc = [], []
        for a, b in pairs:
            acc.append(pid[a] * n_pref + pid[b])
            keys_by_h.append(np.unique(np.concatenate(acc)))
        found = np.zeros(M, dtype=bool)
        for h in range(1, max_hop + 1):
            keys = keys_by_h[h - 1]
            hit = np.zeros(M, dtype=bool)
            for d in range(1, h + 1):
                q = pid[hist_at[d - 1]] * n_pref + pv
                hit |= exists[d - 1] & _member(keys, q)
            new = hit & ~found
            prefix_hop[new, n - 1] = h
            found |= hit
    seen = prefix_hop > 0
    token_cat = np.where(seen.any(1), L - np.argmax(seen[:, ::-1], axis=1), 0).astype(np.int8)
    return TokenLabels(prefix_hop, token_cat)


def _member(sorted_keys, queries):
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return sorted_keys[pos] == queries


# --------------------------------------------------------------------------- RecBole side + cache
def load_splits(config):
    """RecBole's dataset and loaders for ``config`` (the same split every sequential model gets)."""
    from recbole.utils import init_seed

    from recbole_genrec.utils import create_dataset, data_preparation

    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return data_preparation(config, dataset)


def compute_labels(train_seqs, instances, max_hop, codes=None, n_items=None, cache_dir=None):
    """Item (and, with ``codes``, token) labels of every split in ``instances`` ({split: Instances}).

    Cached under ``cache_dir`` by the content hash of everything they depend on. Returns
    ``({split: {"item": ItemLabels, "token": TokenLabels | None}}, info)``; ``info`` has the
    cache key, whether it was a hit and the labelling seconds.
    """
    key = digest({
        "version": LABEL_VERSION, "train": train_seqs.digest(), "max_hop": int(max_hop),
        "codes": array_digest(np.asarray(codes)) if codes is not None else None,
        "instances": {s: inst.digest() for s, inst in instances.items()},
    })
    path = os.path.join(cache_dir, f"labels-{key[:32]}.npz") if cache_dir else None
    entry = load_entry(path, key) if path else None
    if entry is not None:
        arrays, _ = entry
        return _labels_from_arrays(arrays, instances, codes is not None), {"key": key, "path": path, "hit": True, "seconds": 0.0}
    start = time.perf_counter()
    if n_items is None:
        n_items = 1 + int(max([train_seqs.items.max(initial=0)] + [max(i.target.max(initial=0), i.history.max(initial=0)) for i in instances.values()]))
    ts = TransitionSets(train_seqs, max_hop, n_items)
    out, arrays = {}, {}
    for split, inst in instances.items():
        item = label_items(train_seqs, inst, max_hop, n_items, transitions=ts)
        token = label_tokens(train_seqs, inst, codes, max_hop) if codes is not None else None
        out[split] = {"item": item, "token": token}
        arrays[f"{split}__master"], arrays[f"{split}__type_hop"] = item.master, item.type_hop
        if token is not None:
            arrays[f"{split}__prefix_hop"], arrays[f"{split}__token_cat"] = token.prefix_hop, token.token_cat
    seconds = time.perf_counter() - start
    if path:
        save_entry(path, arrays, {"key": key, "max_hop": int(max_hop), "splits": sorted(instances)})
    return out, {"key": key, "path": path, "hit": False, "seconds": seconds}


def _labels_from_arrays(arrays, instances, with_tokens):
    out = {}
    for split in instances:
        item = ItemLabels(arrays[f"{split}__master"], arrays[f"{split}__type_hop"])
        token = TokenLabels(arrays[f"{split}__prefix_hop"], arrays[f"{split}__token_cat"]) if with_tokens else None
        out[split] = {"item": item, "token": token}
    return out


# --------------------------------------------------------------------------- tables
def category_columns(max_hop):
    """The paper's column order of the per-category table."""
    cols = ["memorization", "generalization"]
    cols += [f"substitutability_{h}" for h in range(2, max_hop + 1)]
    for t in TYPES[1:]:
        cols += [f"{t}_{h}" for h in range(1, max_hop + 1)]
    return cols + ["uncategorized"]


def category_mask(item, name):
    if name in MASTER:
        return item.master == MASTER.index(name)
    t, h = name.rsplit("_", 1)
    return item.type_hop[:, TYPES.index(t)] == int(h)


def _mean(x, mask):
    return float(x[mask].mean()) if mask.any() else float("nan")


def category_table(item, scores, max_hop):
    """Rows (one per category, paper order): count, share and each model's Recall@10/NDCG@10,
    with the difference of the last model minus the first. ``scores``: {model: (recall, ndcg)} per instance."""
    names = list(scores)
    N = len(item.master)
    rows = []
    for cat in category_columns(max_hop):
        mask = category_mask(item, cat)
        row = {"category": cat, "count": int(mask.sum()), "share": float(mask.mean()) if N else float("nan")}
        for model, (rec, ndcg) in scores.items():
            row[f"{model} Recall@10"] = _mean(rec, mask)
            row[f"{model} NDCG@10"] = _mean(ndcg, mask)
        if len(names) >= 2:
            a, b = row[f"{names[0]} NDCG@10"], row[f"{names[-1]} NDCG@10"]
            row["Δ NDCG@10"] = b - a
            row["rel Δ NDCG@10 %"] = (b - a) / a * 100.0 if a and np.isfinite(a) and a > 0 else float("nan")
        rows.append(row)
    return rows


def token_matrix(item, token, n_levels):
    """Fig. 4: rows = item-level types + uncategorized (non-memorization instances, each type
    counted once per instance that carries it), columns = token category, cells = row %."""
    non_mem = item.master != MEM
    cols = ["unseen"] + [f"{n}-gram" for n in range(1, n_levels + 1)]
    rows = []
    for name in list(TYPES) + ["uncategorized"]:
        mask = non_mem & ((item.type_hop[:, TYPES.index(name)] > 0) if name in TYPES else (item.master == UNCAT))
        counts = np.bincount(token.token_cat[mask], minlength=n_levels + 1)
        total = int(mask.sum())
        row = {"type": name, "N": total}
        for c, col in enumerate(cols):
            row[col] = counts[c] / total if total else float("nan")  # a fraction of the row
        rows.append(row)
    return rows, cols


def _rank_bins(values, n_bins):
    """Equal-count bins (0..n_bins-1) by value, ties broken by position (stable rank)."""
    order = np.argsort(values, kind="stable")
    bins = np.empty(len(values), dtype=np.int64)
    bins[order] = (np.arange(len(values)) * n_bins) // max(len(values), 1)
    return bins


def _pair_counts(keys_train, queries):
    """How often each query key occurs among the training keys (with multiplicity)."""
    uniq, counts = np.unique(keys_train, return_counts=True)
    if len(uniq) == 0:
        return np.zeros(len(queries), np.int64)
    pos = np.minimum(np.searchsorted(uniq, queries), len(uniq) - 1)
    return np.where(uniq[pos] == queries, counts[pos], 0)


def support_bins(seqs, inst, item, codes, ndcg, window=4, depths=(1, 2, 3), n_bins=5):
    """Spec §4.3(a): non-memorization instances, u = last history item; C_n = training position
    pairs (i < j, j - i <= window) whose n-prefixes equal (P_n(u), P_n(v)); one bin for C_n = 0,
    then ``n_bins`` equal-count bins of the positive counts. ``ndcg``: {model: per-instance NDCG@10}
    (Δ = last model − first)."""
    names = list(ndcg)
    a, b = (np.concatenate(side) for side in zip(*distance_pairs(seqs, window)))
    sel = np.flatnonzero((item.master != MEM) & (inst.length >= 1))
    u, v = inst.at_distance(1)[sel], inst.target[sel]
    rows = []
    for n in depths:
        pid = prefix_ids(codes, n)
        size = int(pid.max()) + 1
        count = _pair_counts(pid[a] * size + pid[b], pid[u] * size + pid[v])
        groups = [("C=0", count == 0)]
        pos = np.flatnonzero(count > 0)
        if len(pos):
            bins = _rank_bins(count[pos], n_bins)
            for k in range(n_bins):
                mask = np.zeros(len(count), dtype=bool)
                mask[pos[bins == k]] = True
                if mask.any():
                    groups.append((f"{int(count[mask].min())}-{int(count[mask].max())}", mask))
        for label, mask in groups:
            row = {"n": n, "C_n": label, "N": int(mask.sum())}
            for m in names:
                row[m] = _mean(ndcg[m][sel], mask)
            row["Δ"] = row[names[-1]] - row[names[0]] if mask.any() else float("nan")
            rows.append(row)
    return rows


def purity_grid(seqs, inst, item, codes, ndcg, prefix=2, n_bins=4):
    """Spec §4.3(b): memorization instances; item purity phi = #(u -> v) / #(u -> any) at distance 1,
    prefix purity psi = the same on ``prefix``-prefixes; mean Δ (last model − first) per cell of the
    ``n_bins`` x ``n_bins`` equal-count grid (phi rows, psi columns)."""
    names = list(ndcg)
    a, b = distance_pairs(seqs, 1)[0]
    sel = np.flatnonzero(item.master == MEM)
    u, v = inst.at_distance(1)[sel], inst.target[sel]
    n_items = int(max(codes.shape[0], a.max(initial=0) + 1))
    phi = _pair_counts(a * n_items + b, u * n_items + v) / np.maximum(_pair_counts(a, u), 1)
    pid = prefix_ids(codes, prefix)
    size = int(pid.max()) + 1
    psi = _pair_counts(pid[a] * size + pid[b], pid[u] * size + pid[v]) / np.maximum(_pair_counts(pid[a], pid[u]), 1)
    delta = ndcg[names[-1]][sel] - ndcg[names[0]][sel]
    rb, cb = _rank_bins(phi, n_bins), _rank_bins(psi, n_bins)
    rows = []
    for r in range(n_bins):
        row = {"phi bin": f"{r + 1}: {phi[rb == r].min():.3f}-{phi[rb == r].max():.3f}" if (rb == r).any() else str(r + 1)}
        for c in range(n_bins):
            mask = (rb == r) & (cb == c)
            lo, hi = (psi[cb == c].min(), psi[cb == c].max()) if (cb == c).any() else (np.nan, np.nan)
            row[f"psi {c + 1} ({lo:.2f}-{hi:.2f})"] = _mean(delta, mask)
            row[f"N{c + 1}"] = int(mask.sum())
        rows.append(row)
    return rows


def msp_bins(msp, item, ndcg, n_bins=5):
    """Equal-count MSP bins (ties broken by rank), with the memorization share and each model's NDCG@10."""
    order = np.argsort(msp, kind="stable")
    rows = []
    for b, idx in enumerate(np.array_split(order, n_bins)):
        row = {"bin": b + 1, "MSP from": float(msp[idx].min()), "MSP to": float(msp[idx].max()),
               "memorization share": float((item.master[idx] == MEM).mean()), "N": int(len(idx))}
        for model, values in ndcg.items():
            row[f"{model} NDCG@10"] = float(values[idx].mean())
        rows.append(row)
    shares = [r["memorization share"] for r in rows]
    corr = float(np.corrcoef(np.arange(len(rows)), shares)[0, 1]) if len(rows) > 1 and np.std(shares) > 0 else float("nan")
    return rows, corr


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}" if np.isfinite(value) else "N/A"
    return str(value)


def markdown(rows, columns=None, pct=()):
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, float("nan"))
            cells.append(f"{v * 100:.1f}%" if c in pct and isinstance(v, float) and np.isfinite(v) else _fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path, rows, columns=None):
    columns = columns or list(rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["N/A" if isinstance(row.get(c), float) and not np.isfinite(row.get(c)) else row.get(c) for c in columns])


# --------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    """Lay out ``fig``, write it to ``path`` as a 120-dpi PNG and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_categories(path, rows, models, title):
    plt = _pyplot()
    cats = [r["category"] for r in rows]
    x = np.arange(len(cats))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(cats) + 2), 4))
    for i, m in enumerate(models):
        vals = [np.nan_to_num(r[f"{m} NDCG@10"]) for r in rows]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{c}\n(n={r['count']})" for c, r in zip(cats, rows)], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("NDCG@10")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def plot_hops(path, rows, models, max_hop, title):
    plt = _pyplot()
    by_name = {r["category"]: r for r in rows}
    fig, axes = plt.subplots(1, len(TYPES), figsize=(3.2 * len(TYPES), 3), sharey=True)
    for ax, t in zip(axes, TYPES):
        hops = [h for h in range(1, max_hop + 1) if f"{t}_{h}" in by_name]
        for m in models:
            ax.plot(hops, [by_name[f"{t}_{h}"][f"{m} NDCG@10"] for h in hops], marker="o", label=m)
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("hop")
        ax.set_xticks(hops)
    axes[0].set_ylabel("NDCG@10")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def plot_shares(path, shares_by_dataset):
    """Stacked bars of the master-label shares, one bar per dataset."""
    plt = _pyplot()
    names = list(shares_by_dataset)
    fig, ax = plt.subplots(figsize=(2 + 1.2 * len(names), 3.5))
    bottom = np.zeros(len(names))
    for label in MASTER:
        vals = np.array([shares_by_dataset[n][label] for n in names])
        ax.bar(names, vals, bottom=bottom, label=label)
        bottom += vals
    ax.set_ylabel("share of test instances")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_tokens(path, rows, cols, title):
    plt = _pyplot()
    data = np.array([[r[c] for c in cols] for r in rows], dtype=float) * 100.0
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2.5, 0.6 * len(rows) + 1.5))
    im = ax.imshow(np.nan_to_num(data), cmap="Blues", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['type']} (n={r['N']})" for r in rows])
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            if np.isfinite(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > 60 else "black")
    fig.colorbar(im, ax=ax, label="% of the row")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def plot_msp(path, rows, models, title):
    plt = _pyplot()
    x = np.arange(1, len(rows) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(x, [r["memorization share"] for r in rows], color="lightgray", label="memorization share")
    ax.set_xlabel("MSP quintile (low → high)")
    ax.set_ylabel("memorization share")
    ax2 = ax.twinx()
    for m in models:
        ax2.plot(x, [r[f"{m} NDCG@10"] for r in rows], marker="o", label=f"{m} NDCG@10")
    ax2.set_ylabel("NDCG@10")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def plot_alpha(path, alpha, title):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(alpha, bins=40, range=(0, 1), color="tab:blue")
    ax.set_xlabel("adaptive alpha (weight of the first model)")
    ax.set_ylabel("test instances")
    ax.set_title(title, fontsize=10)
    _save(fig, path)


# --------------------------------------------------------------------------- the analysis
def analyse(config, prediction_paths, out, split="test"):
    """Labels + all tables/plots for ``prediction_paths`` (>= 2) on ``config``'s dataset; returns the summary dict."""
    from recbole_genrec.analysis import ensemble, predictions

    if len(prediction_paths) < 2:
        raise ConfigError("--predictions needs at least two files (model A and model B).")
    max_hop = int(config["memgen_max_hop"])
    if max_hop < 1 or max_hop > int(config["MAX_ITEM_LIST_LENGTH"]):
        raise ConfigError(
            f"memgen_max_hop={max_hop} must lie in 1..MAX_ITEM_LIST_LENGTH ({config['MAX_ITEM_LIST_LENGTH']}): "
            "the labels read the last memgen_max_hop history items. Fix: --memgen_max_hop=4."
        )
    preds = [predictions.load_predictions(p) for p in prediction_paths]
    names = [p.model for p in preds]
    if len(set(names)) < len(names):  # the same model twice: tell the columns apart
        names = [f"{p.model}#{i + 1}" for i, p in enumerate(preds)]
    t0 = time.perf_counter()
    train_data, valid_data, test_data = load_splits(config)
    load_seconds = time.perf_counter() - t0
    dataset = train_data._dataset
    instances = {"valid": eval_instances(valid_data), "test": eval_instances(test_data)}
    expected = {s: predictions.instance_digest(s, i.user, i.target) for s, i in instances.items()}
    for p in preds:
        if p.meta["item_mapping"] != predictions.item_mapping_digest(dataset):
            raise predictions.PredictionsError(
                f"Predictions '{p.path}' use another item-id mapping than dataset '{config['dataset']}' "
                "with these config files. Fix: pass the config files the model was trained with."
            )
    predictions.check_compatible(preds, dataset=config["dataset"], expected=expected)
    code_model, codes = next(((n, p.item_sid) for n, p in zip(names, preds) if p.item_sid is not None), (None, None))
    seqs = train_sequences(dataset)
    labels, cache = compute_labels(seqs, instances, max_hop, codes, n_items=dataset.item_num,
                                   cache_dir=os.path.join(config["checkpoint_dir"], "memgen"))
    item, token = labels[split]["item"], labels[split]["token"]
    scores = {}
    for name, p in zip(names, preds):
        arr = p.split(split)
        scores[name] = ensemble.per_instance(arr["items"], arr["target"], 10)
    ndcg = {name: s[1] for name, s in scores.items()}
    os.makedirs(out, exist_ok=True)
    summary = {"dataset": config["dataset"], "split": split, "models": names, "files": list(prediction_paths),
               "max_hop": max_hop, "n_instances": int(len(item.master)), "label_cache": cache,
               "dataset_load_seconds": load_seconds,
               "config": {k: config[k] for k in ("seed", "MAX_ITEM_LIST_LENGTH", "eval_args", "memgen_max_hop",
                                                 "ensemble_alphas", "ensemble_ks", "ensemble_taus")}}
    summary["shares"] = {m: float((item.master == i).mean()) for i, m in enumerate(MASTER)}
    sections = [f"# Memorization vs generalization: {' vs '.join(names)} on {config['dataset']} ({split})", "",
                f"{len(item.master)} {split} instances; labels from the train split's sequences "
                f"(max hop {max_hop}; label cache {'hit' if cache['hit'] else 'built'} in {cache['seconds']:.2f} s).", ""]
    rows = category_table(item, scores, max_hop)
    summary["categories"] = rows
    write_csv(os.path.join(out, "categories.csv"), rows)
    sections += ["## Categories (count, share of N, per-category Recall@10 / NDCG@10, Δ = "
                 f"{names[-1]} − {names[0]})", "", markdown(rows, pct=("share",)), ""]
    plot_categories(os.path.join(out, "categories.png"), rows, names, f"{config['dataset']}: NDCG@10 per category")
    plot_hops(os.path.join(out, "hops.png"), rows, names, max_hop, f"{config['dataset']}: NDCG@10 by hop")
    plot_shares(os.path.join(out, "shares.png"), {config["dataset"]: summary["shares"]})
    if token is not None:
        trows, cols = token_matrix(item, token, codes.shape[1])
        summary["tokens"] = {"rows": trows, "codes_from": code_model,
                             "n_eq_L_hop1_equals_memorization": bool(np.array_equal(token.prefix_hop[:, -1] == 1, item.master == MEM))}
        write_csv(os.path.join(out, "tokens.csv"), trows)
        sections += [f"## Token lens (Fig. 4; codes of {code_model}; non-memorization instances, row %)", "",
                     markdown(trows, pct=cols), ""]
        plot_tokens(os.path.join(out, "tokens.png"), trows, cols, f"{config['dataset']}: item-level type → token category")
    if codes is not None:
        srows = support_bins(seqs, instances[split], item, codes, ndcg, int(config["memgen_support_window"]),
                             tuple(config["memgen_support_depths"]))
        prows = purity_grid(seqs, instances[split], item, codes, ndcg, int(config["memgen_purity_prefix"]))
        summary["support_bins"], summary["purity_grid"] = srows, prows
        write_csv(os.path.join(out, "support_bins.csv"), srows)
        write_csv(os.path.join(out, "purity_grid.csv"), prows)
        sections += [f"## Trade-off (§4.3a): non-memorization instances by prefix support C_n (window "
                     f"{config['memgen_support_window']}; per-instance NDCG@10, Δ = {names[-1]} − {names[0]})", "",
                     markdown(srows), "",
                     f"## Trade-off (§4.3b): memorization instances, mean Δ NDCG@10 ({names[-1]} − {names[0]}) by item "
                     f"purity φ (rows) and {config['memgen_purity_prefix']}-prefix purity ψ (columns), quartiles", "",
                     markdown(prows), ""]
    msp_index = next((i for i, p in enumerate(preds) if p.scores_all_items), None)
    if msp_index is not None:
        msp = preds[msp_index].split(split)["msp"]
        brows, corr = msp_bins(msp, item, ndcg, int(config["memgen_msp_bins"]))
        summary["msp_bins"] = {"model": names[msp_index], "rows": brows, "bin_share_correlation": corr}
        write_csv(os.path.join(out, "msp_bins.csv"), brows)
        sections += [f"## MSP bins ({names[msp_index]}'s max softmax probability; equal-count bins)", "",
                     markdown(brows, pct=("memorization share",)), "",
                     f"Correlation of bin index and memorization share: {corr:.3f}", ""]
        plot_msp(os.path.join(out, "msp.png"), brows, names, f"{config['dataset']}: MSP quintiles of {names[msp_index]}")
        a = preds[msp_index]
        b = next(p for i, p in enumerate(preds) if i != msp_index)
        ens = ensemble.run_ensemble(a, b, config["ensemble_alphas"], config["ensemble_ks"], config["ensemble_taus"],
                                    topk=tuple(config["topk"]))
        alpha = ens.pop("alpha_test", None)
        summary["ensemble"] = ens
        erows = [{"model": n, "valid NDCG@10": ens["valid"][n]["ndcg@10"], "test Recall@10": m["recall@10"],
                  "test NDCG@10": m["ndcg@10"], "gain vs best single %": ens["gain_pct"][n]}
                 for n, m in ens["test"].items()]
        write_csv(os.path.join(out, "ensemble.csv"), erows)
        ch = ens["chosen"]
        chosen = f"fixed alpha = {ch['fixed']['alpha']}"
        if "adaptive" in ch:
            chosen += f"; adaptive k = {ch['adaptive']['k']}, tau = {ch['adaptive']['tau']}"
        sections += [f"## Ensemble (alpha = weight of {a.model}; chosen on validation NDCG@10: {chosen})", "",
                     markdown(erows, columns=list(erows[0])), ""]
        if alpha is not None:
            plot_alpha(os.path.join(out, "alpha.png"), alpha, f"{config['dataset']}: adaptive alpha on test")
            summary["alpha_test_quantiles"] = [float(q) for q in np.quantile(alpha, [0, 0.25, 0.5, 0.75, 1])]
    sections += ["## Configuration", "", "```json", json.dumps(summary["config"], default=str), "```", ""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(sections))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=_json_default)
    return summary


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m recbole_genrec.analysis.memgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config_files", default=None, help="space-separated yaml files (those the models were trained with)")
    parser.add_argument("--predictions", nargs="+", required=True, metavar="FILE", help="two predictions files (--save_predictions)")
    parser.add_argument("--out", default=None, help="output folder (default: benchmarks/results/memgen_<dataset>_<A>_vs_<B>)")
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if not (a.startswith("--") and "=" in a)]
    if bad:
        raise ConfigError(f"Unrecognised arguments {bad}. Fix: config overrides are --key=value.")
    from recbole_genrec.config import Config

    config = Config(model="SASRec", dataset=args.dataset,
                    config_file_list=args.config_files.split() if args.config_files else None,
                    config_dict={"show_progress": False}, argv=extra)
    out = args.out or os.path.join(
        "benchmarks", "results",
        f"memgen_{args.dataset}_" + "_vs_".join(os.path.splitext(os.path.basename(p))[0] for p in args.predictions))
    summary = analyse(config, args.predictions, out, args.split)
    with open(os.path.join(out, "report.md")) as f:
        print(f.read())
    print(f"[memgen] wrote {out}/ (report.md, *.csv, *.png, summary.json)")
    return summary


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {err}")
