"""GenPAS training-free parameter search (spec ``shared/specs/genpas.md`` §3).

Step 1, target alignment: for every (alpha, beta) of the grid the exact training-target
distribution ``p_theta`` is compared with the empirical distribution ``q`` of the **validation**
targets, ``KL_eps(q || p_theta)`` (eps = 1e-10 added to both, renormalised; gamma has no effect).
The filter keeps ``KL <= KL(MT)`` (``genpas_kl_keep: mt``, default) or the lowest-KL fraction of
(alpha, beta) pairs (``genpas_kl_keep: 0.25``), times every gamma, plus MT itself
(``genpas_kl_include_mt``). Test targets are used only for the analysis column, never to select.

Step 2, alignment A and discrimination D (our reconstruction, spec §3 "(decide)"). Similarity is
``1 - NED`` with ``NED(a, b) = Levenshtein(a, b) / max(|a|, |b|)``. Queries are the validation
pairs ``(x_v, y_v)`` of ``genpas_ad_queries`` users sampled with the config seed. Under theta,
with exact weights ``P(u) P(t|u) P(i|u,t)`` over every distinct truncated training input::

    A(theta) = mean_v  E_theta[1 - NED(x, x_v) | y = y_v]   over v with P_theta(y = y_v) > 0
    D(theta) = mean_v  E_theta[1 - NED(x, x_v) | y != y_v]  (lower is better)

and the coverage (share of queries with ``P_theta(y = y_v) > 0``) is reported. Two sequences with
no common item have similarity 0, so only training inputs sharing an item with ``x_v`` are
compared (an inverted index); the result is still exact. Similarities do not depend on theta, so
they are computed once and every theta is two sparse matrix-vector products. When there are more
than ``genpas_ad_max_pairs`` distinct inputs, ``genpas_ad_sample_pairs`` pairs are drawn from
each theta instead (Monte Carlo weights). A and D are pluggable (``ad_fn`` of :func:`run_search`).

Command line (the dataset is loaded exactly as training would load it: same config files, filters
and split; other ``--key=value`` pairs are config overrides)::

    python -m recbole_genrec.analysis.genpas_search --dataset=beauty \
        --config_files=properties/dataset/beauty.yaml [--genpas_top_k=5 --genpas_ad_queries=2000 ...]

prints the KL table and the ranked candidates, writes ``genpas_search_<dataset>.json`` and
``genpas_search_<dataset>_kl.png`` to ``genpas_search_out`` and prints the
``--train_sampler=genpas ...`` flags of the top-k.

Ranking (paper): ``rank_A`` by A descending, ``rank_D`` by D ascending (ties share the smallest
rank), ``score = max(rank_A, rank_D)``, lower is better; ties broken by A/D (higher first), then
KL (lower first), then grid order. The top ``genpas_top_k`` (default 5) are returned; train each
and pick the best by validation NDCG@10.
"""

import argparse
import json
import math
import os
import sys
import time
from logging import getLogger

import numpy as np
import scipy.sparse as sp
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cpdist
from scipy.stats import rankdata

from recbole_genrec.defaults import package_defaults
from recbole_genrec.errors import ConfigError, UserError
from recbole_genrec.safe_io import atomic_write_text
from recbole_genrec.data.genpas import (
    INF,
    PRESETS,
    GenPASSampler,
    format_exponent,
    group_positions,
    kl_divergence,
    parse_exponent,
    preset_name,
    target_distribution,
)

MT = PRESETS["MT"]
# the search's defaults are genpas.yaml's (the one place they live)
DEFAULTS = package_defaults("genpas")
DEFAULT_GRID = {name: DEFAULTS[f"genpas_grid_{name}"] for name in ("alpha", "beta", "gamma")}


def _char_base(n_items):
    """Items become single code points (rapidfuzz's fastest path): 2-byte ones below the
    surrogates when they fit (< 55k items), else above the BMP (up to ~1.05M items)."""
    if n_items + 0x100 <= 0xD800:
        return 0x100
    if n_items + 0x10000 <= 0x110000:
        return 0x10000
    raise ValueError(f"GenPAS search: {n_items} items exceed the 1,048,576 the NED encoding supports.")


# --------------------------------------------------------------------------- NED


def ned(a, b):
    """Normalised edit distance ``Levenshtein(a, b) / max(|a|, |b|)`` of two item sequences.

    Insertions, deletions and substitutions cost 1. ``ned([1,2,3,4], [1,3,4]) == 0.25``; disjoint
    sequences give 1; identical ones 0 (two empty sequences: 0).
    """
    return Levenshtein.normalized_distance(list(a), list(b))


def _as_strings(padded, lengths, base):
    """Item-id rows -> one code point per item."""
    return ["".join(map(chr, (base + v for v in row[:n]))) for row, n in zip(padded.tolist(), lengths.tolist())]


# --------------------------------------------------------------------------- step 1: KL


def parse_grid(config_grid=None):
    """Grid dict ``{alpha, beta, gamma}`` from ``genpas_grid_*`` values (``inf`` strings allowed)."""
    grid = {}
    for name in ("alpha", "beta", "gamma"):
        key = f"genpas_grid_{name}"
        values = DEFAULT_GRID[name] if config_grid is None else config_grid.get(name, DEFAULT_GRID[name])
        if isinstance(values, (str, int, float)):
            values = [values]
        if values is None or len(values) == 0:
            raise ConfigError(f"Config key '{key}' is empty. Fix: give a list, e.g. {DEFAULT_GRID[name]}.")
        grid[name] = list(dict.fromkeys(parse_exponent(v, key) for v in values))  # deduplicated, in order
    return grid


def kl_table(seqs, q_valid, n_items, alphas, betas, q_test=None):
    """``{(alpha, beta): {"valid": KL, "test": KL}}`` for every grid pair, plus MT's."""
    table = {}
    pairs = [(a, b) for a in alphas for b in betas]
    if MT[:2] not in pairs:
        pairs.append(MT[:2])
    for a, b in pairs:
        p = target_distribution(seqs, a, b, n_items)[1:]  # item 0 is RecBole's padding
        row = {"valid": kl_divergence(q_valid[1:], p)}
        if q_test is not None:
            row["test"] = kl_divergence(q_test[1:], p)
        table[(a, b)] = row
    return table


def kl_filter(table, alphas, betas, gammas, keep="mt", include_mt=True):
    """Candidates ``(alpha, beta, gamma)`` that pass the KL filter (see module doc), grid order.

    Raises ``ValueError`` when nothing is left.
    """
    grid_ab = [(a, b) for a in alphas for b in betas]
    kl = {ab: table[ab]["valid"] for ab in grid_ab}
    mt_kl = table[MT[:2]]["valid"]
    if str(keep).strip().lower() == "mt":
        kept = [ab for ab in grid_ab if kl[ab] <= mt_kl * (1 + 1e-12)]
    else:
        try:
            frac = float(keep)
        except (TypeError, ValueError):
            frac = float("nan")
        if not (0 < frac <= 1):
            raise ConfigError(
                f"Config key 'genpas_kl_keep' got {keep!r}. Fix: mt, or a fraction in (0, 1] such as 0.25."
            )
        n_keep = max(1, math.ceil(frac * len(grid_ab)))
        best = sorted(grid_ab, key=kl.get)[:n_keep]  # a stable sort: equal KLs stay in grid order
        kept = [ab for ab in grid_ab if ab in best]
    candidates = [(a, b, g) for a, b in kept for g in gammas]
    if include_mt and MT not in candidates:
        candidates.append(MT)
    if not candidates:
        raise ConfigError(
            f"GenPAS search: no configuration is left after the KL filter (genpas_kl_keep={keep!r}, "
            f"KL(MT) on validation = {mt_kl:.4f}, the grid's lowest KL = {min(kl.values()):.4f}). "
            "Fix: widen genpas_grid_alpha/genpas_grid_beta, set genpas_kl_keep to a fraction such as "
            "0.25, or genpas_kl_include_mt: true."
        )
    return candidates


# --------------------------------------------------------------------------- step 2: A / D


class WindowSimilarity:
    """``1 - NED`` between query inputs and the training inputs that share an item with them.

    Args:
        seqs: training parts (:class:`~recbole_genrec.data.genpas.Sequences`).
        rows, t, start: the training inputs ``s_start..s_{t-1}`` (1-based) with targets ``s_t``.
        n_items: item vocabulary size (ids ``< n_items``).

    Memory is bounded: queries are processed in chunks whose candidate pairs (an upper bound
    from the inverted index) stay below ``max_nnz``; similarities are never stored, only their
    products with the weight columns of every theta.
    """

    def __init__(self, seqs, rows, t, start, n_items):
        rows, t, start = (np.asarray(a, dtype=np.int64) for a in (rows, t, start))
        self.n_windows = rows.size
        self.n_items = int(n_items)
        off = seqs.offsets[rows] + start - 1
        w_len = t - start
        self.w_target = seqs.items[seqs.offsets[rows] + t - 1]
        w_ptr, pos = group_positions(w_len)
        flat_items = seqs.items[np.repeat(off, w_len) + pos]
        # windows x items (binary) and its column counts (inverted-index sizes)
        self.wmat_t = sp.csr_matrix(
            (np.ones(flat_items.size, np.float32), flat_items, w_ptr), shape=(rows.size, self.n_items)
        ).T.tocsr()
        self.item_windows = np.diff(self.wmat_t.indptr)
        self.char_base = _char_base(self.n_items)
        flat = "".join(map(chr, (flat_items + self.char_base).tolist()))
        bounds = w_ptr.tolist()
        self.w_str = [flat[bounds[k] : bounds[k + 1]] for k in range(rows.size)]

    def compare_bound(self, q_lists, q_lengths):
        """Per query, an upper bound on its compared training inputs (sum of inverted-index sizes)."""
        q_lists, q_lengths = np.asarray(q_lists, np.int64), np.asarray(q_lengths, np.int64)
        mask = np.arange(q_lists.shape[1])[None, :] < q_lengths[:, None]
        return np.where(mask, self.item_windows[np.where(mask, q_lists, 0)], 0).sum(1)

    def scores(self, weights, q_lists, q_lengths, q_targets, workers=-1, max_nnz=4_000_000):
        """``A[K], D[K], coverage[K]`` for ``K`` weight columns (``[n_windows, K]``) over the queries."""
        weights = np.asarray(weights, dtype=np.float64).reshape(self.n_windows, -1)
        q_lists, q_lengths, q_targets = (np.asarray(a, np.int64) for a in (q_lists, q_lengths, q_targets))
        n_q, k_cols = q_targets.size, weights.shape[1]
        qmask = np.arange(q_lists.shape[1])[None, :] < q_lengths[:, None]
        q_ptr = np.concatenate([[0], np.cumsum(q_lengths)])
        q_items = q_lists[qmask]
        qmat = sp.csr_matrix((np.ones(q_items.size, np.float32), q_items, q_ptr), shape=(n_q, self.n_items))
        q_str = _as_strings(q_lists, q_lengths, self.char_base)
        # P_theta(y = v) for every item (one column per theta), then per query: [Q, K]
        p_y = [np.bincount(self.w_target, weights=w, minlength=self.n_items)[: self.n_items] for w in weights.T]
        p_v = np.stack(p_y, 1)[q_targets]
        rest = weights.sum(0)[None, :] - p_v
        num_same = np.zeros((n_q, k_cols))
        num_diff = np.zeros((n_q, k_cols))
        # chunks of queries with a bounded number of candidate pairs
        bound = self.compare_bound(q_lists, q_lengths)
        self.n_compared = 0
        lo = 0
        while lo < n_q:
            hi = lo + 1
            total = bound[lo]
            while hi < n_q and total + bound[hi] <= max_nnz:
                total += bound[hi]
                hi += 1
            cand = (qmat[lo:hi] @ self.wmat_t).tocsr()  # [chunk, n_windows], nonzero = shares an item
            qi = np.repeat(np.arange(hi - lo), np.diff(cand.indptr))
            wi = cand.indices.astype(np.int64)
            self.n_compared += int(wi.size)
            if wi.size:
                sim = 1.0 - cpdist(
                    [q_str[lo + k] for k in qi.tolist()], [self.w_str[k] for k in wi.tolist()],
                    scorer=Levenshtein.normalized_distance, workers=workers, dtype=np.float64,
                )
                same = self.w_target[wi] == q_targets[lo + qi]
                shape = (hi - lo, self.n_windows)
                num_same[lo:hi] = sp.csr_matrix((sim * same, (qi, wi)), shape=shape) @ weights
                num_diff[lo:hi] = sp.csr_matrix((sim * ~same, (qi, wi)), shape=shape) @ weights
            lo = hi
        a, d, cov = [], [], []
        for k in range(k_cols):
            has, ok = p_v[:, k] > 0, rest[:, k] > 0
            a.append(float(np.mean(num_same[has, k] / p_v[has, k])) if has.any() else float("nan"))
            d.append(float(np.mean(num_diff[ok, k] / rest[ok, k])) if ok.any() else float("nan"))
            cov.append(float(has.mean()) if n_q else 0.0)
        return a, d, cov


def _fit_queries(sim, queries, max_compared, seed):
    """Queries whose comparison bound fits ``max_compared`` (a seeded random subset, data order)."""
    q_lists, q_lengths, q_targets = queries
    bound = sim.compare_bound(q_lists, q_lengths)
    if max_compared is None or max_compared <= 0 or bound.sum() <= max_compared:
        return queries
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 4099]).permutation(bound.size)
    n_fit = max(1, int(np.searchsorted(np.cumsum(bound[order]), max_compared, side="right")))
    keep = np.sort(order[:n_fit])
    getLogger().warning(
        f"GenPAS search: A/D would compare up to {int(bound.sum()):,} (query, training input) pairs per "
        f"configuration (> genpas_ad_max_compared = {int(max_compared):,}); using {keep.size} of "
        f"{bound.size} queries. Raise genpas_ad_max_compared for more queries (slower)."
    )
    return q_lists[keep], q_lengths[keep], q_targets[keep]


def alignment_discrimination(seqs, thetas, queries, n_items, max_len, seed, truncation=DEFAULTS["genpas_truncation"],
                             max_pairs=DEFAULTS["genpas_ad_max_pairs"], sample_pairs=DEFAULTS["genpas_ad_sample_pairs"],
                             workers=-1, max_compared=DEFAULTS["genpas_ad_max_compared"]):
    """``({theta: (A, D, coverage)}, n_queries_used)`` for every theta.

    Exact weights over every distinct truncated input, or ``sample_pairs`` pairs drawn from each
    theta when there are more than ``max_pairs`` inputs. Queries are subsampled (seeded, logged)
    when their comparisons would exceed ``max_compared`` per configuration (dense data, long inputs).
    """
    out = {}
    first = GenPASSampler(seqs, *thetas[0], max_len=max_len, truncation=truncation)
    if first.n_windows() <= max_pairs:
        rows, t, start, _ = first.exact_windows()
        sim = WindowSimilarity(seqs, rows, t, start, n_items)
        queries = _fit_queries(sim, queries, max_compared, seed)
        weights = np.stack(
            [GenPASSampler(seqs, *th, max_len=max_len, truncation=truncation).exact_windows()[3] for th in thetas], 1
        )
        a, d, cov = sim.scores(weights, *queries, workers)
        return {th: (a[k], d[k], cov[k]) for k, th in enumerate(thetas)}, int(len(queries[2]))
    for k, theta in enumerate(thetas):  # Monte Carlo: sampled pairs, merged by truncated input
        sampler = GenPASSampler(seqs, *theta, max_len=max_len, truncation=truncation)
        rows, t, i = sampler.sample(sample_pairs, np.random.default_rng([int(seed) & 0xFFFFFFFF, 7919, k]))
        start = i if max_len is None else np.maximum(i, t - max_len)
        uniq, counts = np.unique(np.stack([rows, t, start], 1), axis=0, return_counts=True)
        sim = WindowSimilarity(seqs, uniq[:, 0], uniq[:, 1], uniq[:, 2], n_items)
        if k == 0:  # one query subset for every theta
            queries = _fit_queries(sim, queries, max_compared, seed)
        a, d, cov = sim.scores(counts / counts.sum(), *queries, workers)
        out[theta] = (a[0], d[0], cov[0])
    return out, int(len(queries[2]))


# --------------------------------------------------------------------------- ranking


def rank_candidates(records):
    """Add ``rank_A``, ``rank_D``, ``score`` to each record and return them best first.

    Each record has ``theta``, ``A``, ``D``, ``KL`` (and ``order``, its grid position). A NaN A
    ranks last; a D of 0 makes A/D infinite.
    """
    a = np.array([r["A"] for r in records], dtype=np.float64)
    d = np.array([r["D"] for r in records], dtype=np.float64)
    rank_a = rankdata(-np.where(np.isnan(a), -np.inf, a), method="min")
    rank_d = rankdata(np.where(np.isnan(d), np.inf, d), method="min")
    out = []
    for k, r in enumerate(records):
        r = dict(r)
        r["rank_A"], r["rank_D"] = int(rank_a[k]), int(rank_d[k])
        r["score"] = max(r["rank_A"], r["rank_D"])
        if np.isnan(a[k]) or np.isnan(d[k]):
            r["A/D"] = float("nan")
        else:
            r["A/D"] = float(a[k] / d[k]) if d[k] > 0 else (INF if a[k] > 0 else 0.0)
        r.setdefault("order", k)
        out.append(r)

    def key(r):
        ratio = r["A/D"] if not math.isnan(r["A/D"]) else -INF
        return (r["score"], -ratio, r["KL"], r["order"])

    return sorted(out, key=key)


# --------------------------------------------------------------------------- the search


def sample_queries(valid_lists, valid_lengths, valid_targets, n_queries, seed):
    """Up to ``n_queries`` validation pairs, drawn without replacement (seeded), in data order."""
    n = len(valid_targets)
    if n == 0:
        raise ConfigError("GenPAS search: the validation split is empty, so there is no query.")
    if n_queries is None or n_queries <= 0 or n_queries >= n:
        idx = np.arange(n)
    else:
        idx = np.sort(np.random.default_rng([int(seed) & 0xFFFFFFFF, 2000]).choice(n, n_queries, replace=False))
    return np.asarray(valid_lists)[idx], np.asarray(valid_lengths)[idx], np.asarray(valid_targets)[idx]


def theta_config_line(theta):
    """Command-line flags that train with ``theta``."""
    a, b, g = map(format_exponent, theta)
    return f"--train_sampler=genpas --genpas_alpha={a} --genpas_beta={b} --genpas_gamma={g}"


def empirical_distribution(targets, n_items):
    """The empirical distribution of ``targets`` over the ``n_items`` item ids."""
    q = np.bincount(np.asarray(targets, np.int64), minlength=n_items).astype(np.float64)
    return q / q.sum()


def run_search(seqs, valid, n_items, max_len, seed, test_targets=None, grid=None, kl_keep=DEFAULTS["genpas_kl_keep"],
               include_mt=DEFAULTS["genpas_kl_include_mt"], top_k=DEFAULTS["genpas_top_k"],
               n_queries=DEFAULTS["genpas_ad_queries"], max_pairs=DEFAULTS["genpas_ad_max_pairs"],
               sample_pairs=DEFAULTS["genpas_ad_sample_pairs"], truncation=DEFAULTS["genpas_truncation"],
               workers=-1, ad_fn=None, max_compared=DEFAULTS["genpas_ad_max_compared"]):
    """The whole search on rebuilt training parts ``seqs`` and validation pairs ``valid``.

    Args:
        valid: ``(lists [N, L], lengths [N], targets [N])`` of the validation split.
        test_targets: optional, only for the analysis column ``KL test`` (never used to select).
        ad_fn: replaces :func:`alignment_discrimination` (same signature and return value) to plug
            in another A/D.

    Returns a JSON-ready dict (see :func:`write_outputs`).
    """
    timings = {}
    t0 = time.perf_counter()
    grid = parse_grid(grid)
    if int(top_k) < 1:
        raise ConfigError(f"Config key 'genpas_top_k' must be >= 1, got {top_k}.")
    q_valid = empirical_distribution(valid[2], n_items)
    q_test = empirical_distribution(test_targets, n_items) if test_targets is not None and len(test_targets) else None
    table = kl_table(seqs, q_valid, n_items, grid["alpha"], grid["beta"], q_test)
    timings["kl_s"] = time.perf_counter() - t0
    timings["kl_per_config_s"] = timings["kl_s"] / len(table)
    candidates = kl_filter(table, grid["alpha"], grid["beta"], grid["gamma"], kl_keep, include_mt)

    t1 = time.perf_counter()
    queries = sample_queries(*valid, n_queries, seed)
    ad, n_used = (ad_fn or alignment_discrimination)(
        seqs, candidates, queries, n_items, max_len, seed, truncation, max_pairs, sample_pairs, workers,
        max_compared,
    )
    timings["ad_s"] = time.perf_counter() - t1
    records = []
    for k, theta in enumerate(candidates):
        a, d, cov = ad[theta]
        records.append({"theta": theta, "A": a, "D": d, "coverage": cov, "KL": table[theta[:2]]["valid"], "order": k})
    ranked = rank_candidates(records)
    timings["total_s"] = time.perf_counter() - t0

    def tj(theta):
        return [format_exponent(x) for x in theta]

    return {
        "grid": {k: [format_exponent(x) for x in v] for k, v in grid.items()},
        "kl_keep": str(kl_keep),
        "n_queries": int(len(queries[2])),
        "n_queries_used": n_used,
        "seed": int(seed),
        "max_len": max_len,
        "truncation": truncation,
        "kl": [
            {"alpha": format_exponent(a), "beta": format_exponent(b), "name": preset_name((a, b)), **row}
            for (a, b), row in table.items()
        ],
        "kl_presets": {
            name: kl_table(seqs, q_valid, n_items, [t[0]], [t[1]], q_test)[t[:2]] for name, t in PRESETS.items()
        },
        "candidates": [
            {**{k: v for k, v in r.items() if k not in ("theta", "order")}, "theta": tj(r["theta"]),
             "name": preset_name(r["theta"])}
            for r in ranked
        ],
        "top_k": [
            {"theta": tj(r["theta"]), "name": preset_name(r["theta"]), "config": theta_config_line(r["theta"])}
            for r in ranked[: int(top_k)]
        ],
        "timings": timings,
    }


# --------------------------------------------------------------------------- dataset, report


def search_inputs_from_datasets(train_dataset, valid_dataset, test_dataset=None):
    """``(seqs, valid, test_targets, n_items, max_len)`` from RecBole's built splits."""
    from recbole_genrec.data.dataloader import TrainSequences

    ts = TrainSequences(train_dataset)
    iid = valid_dataset.iid_field
    lst = iid + valid_dataset.config["LIST_SUFFIX"]
    vf = valid_dataset.inter_feat
    valid = (vf[lst].numpy(), vf[valid_dataset.item_list_length_field].numpy(), vf[iid].numpy())
    test_targets = None if test_dataset is None else test_dataset.inter_feat[iid].numpy()
    return ts.seqs, valid, test_targets, train_dataset.item_num, ts.max_len


def format_table(result):
    """The printed report: KL table, candidates with A/D ranks, top-k config lines."""
    has_test = any("test" in r for r in result["kl"])
    lines = ["KL(q || p_theta) per (alpha, beta)  [gamma has no effect; selection uses valid]",
             f"{'alpha':>6} {'beta':>6} {'KL valid':>9}" + (f" {'KL test':>8}" if has_test else "")]
    for r in sorted(result["kl"], key=lambda r: r["valid"]):
        lines.append(f"{r['alpha']:>6} {r['beta']:>6} {r['valid']:9.4f}" + (f" {r['test']:8.4f}" if has_test else ""))
    lines += ["", f"Candidates after the KL filter ({len(result['candidates'])}), best first:",
              f"{'alpha':>6} {'beta':>6} {'gamma':>6} {'name':>4} {'KL':>7} {'A':>9} {'D':>9} {'A/D':>7} "
              f"{'cov':>5} {'rank_A':>6} {'rank_D':>6} {'score':>5}"]
    for r in result["candidates"]:
        a, b, g = r["theta"]
        lines.append(
            f"{a:>6} {b:>6} {g:>6} {r['name']:>4} {r['KL']:7.4f} {r['A']:9.5f} {r['D']:9.6f} {r['A/D']:7.2f} "
            f"{r['coverage']:5.2f} {r['rank_A']:6d} {r['rank_D']:6d} {r['score']:5d}"
        )
    lines += ["", f"Top {len(result['top_k'])} (train each; pick by valid NDCG@10):"]
    lines += [f"  {r['config']}" + (f"   # {r['name']}" if r["name"] else "") for r in result["top_k"]]
    t = result["timings"]
    lines.append(
        f"Timings: KL {t['kl_s']:.3f}s ({t['kl_per_config_s'] * 1000:.1f} ms/config), A/D {t['ad_s']:.1f}s, "
        f"search {t['total_s']:.1f}s" + (f", with data loading {t['with_loading_s']:.1f}s" if "with_loading_s" in t else "")
    )
    return "\n".join(lines)


def plot_kl_heatmap(result, path):
    """KL(valid) over alpha x beta as a PNG; cells that pass the filter are outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas, betas = result["grid"]["alpha"], result["grid"]["beta"]
    cell = {(r["alpha"], r["beta"]): r["valid"] for r in result["kl"]}
    kept = {(c["theta"][0], c["theta"][1]) for c in result["candidates"]}
    mat = np.array([[cell[(a, b)] for b in betas] for a in alphas])
    fig, ax = plt.subplots(figsize=(1.2 * len(betas) + 2, 0.9 * len(alphas) + 1.5))
    im = ax.imshow(mat, cmap="viridis_r", aspect="auto")
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            ax.text(j, i, f"{mat[i, j]:.3f}", ha="center", va="center",
                    color="white" if mat[i, j] > (mat.min() + mat.max()) / 2 else "black", fontsize=9)
            if (a, b) in kept:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(len(betas)), betas)
    ax.set_yticks(range(len(alphas)), alphas)
    ax.set_xlabel("beta (target bias)")
    ax.set_ylabel("alpha (sequence bias)")
    ax.set_title(f"KL(valid targets || train targets); red = kept ({result.get('dataset', '')})")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(result, out_dir, name):
    """Write ``<name>.json`` (atomically) and ``<name>_kl.png`` into ``out_dir``; return both paths."""
    json_path = os.path.join(out_dir, f"{name}.json")
    png_path = os.path.join(out_dir, f"{name}_kl.png")
    atomic_write_text(json_path, json.dumps(result, indent=1, default=float))  # creates out_dir
    plot_kl_heatmap(result, png_path)
    return json_path, png_path


def search_from_config(config, write=True):
    """Load ``config['dataset']`` as RecBole would, run the search with the ``genpas_*`` keys."""
    from recbole_genrec.utils import create_dataset

    t0 = time.perf_counter()
    train_ds, valid_ds, test_ds = create_dataset(config).build()
    seqs, valid, test_targets, n_items, max_len = search_inputs_from_datasets(train_ds, valid_ds, test_ds)
    t_load = time.perf_counter() - t0

    result = run_search(
        seqs, valid, n_items, max_len, config["seed"], test_targets,
        grid={n: config[f"genpas_grid_{n}"] for n in ("alpha", "beta", "gamma")},
        kl_keep=config["genpas_kl_keep"],
        include_mt=bool(config["genpas_kl_include_mt"]),
        top_k=int(config["genpas_top_k"]),
        n_queries=int(config["genpas_ad_queries"]),
        max_pairs=int(config["genpas_ad_max_pairs"]),
        sample_pairs=int(config["genpas_ad_sample_pairs"]),
        max_compared=int(config["genpas_ad_max_compared"]),
        truncation=str(config["genpas_truncation"]),
    )
    result["dataset"] = config["dataset"]
    result["timings"]["load_s"] = t_load
    result["timings"]["with_loading_s"] = time.perf_counter() - t0
    if write:
        out_dir = config["genpas_search_out"] or os.path.join(config["checkpoint_dir"], "genpas_search")
        result["outputs"] = list(write_outputs(result, out_dir, f"genpas_search_{config['dataset']}"))
        getLogger().info(f"GenPAS search written to {result['outputs'][0]} and {result['outputs'][1]}")
    return result


def main(argv=None):
    from recbole_genrec.config import Config

    parser = argparse.ArgumentParser(prog="python -m recbole_genrec.analysis.genpas_search")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--model", "-m", type=str, default="SASRec",
                        help="sequential model whose config/MAX_ITEM_LIST_LENGTH to use (no training)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    files = args.config_files.strip().split(" ") if args.config_files else None
    config = Config(model=args.model, dataset=args.dataset, config_file_list=files, argv=rest)
    result = search_from_config(config)
    print(format_table(result))
    print(f"JSON: {result['outputs'][0]}\nKL heat map: {result['outputs'][1]}")
    return result


if __name__ == "__main__":
    try:
        main()
    except (UserError, ValueError) as err:  # a mistake in the command or the files: no traceback
        sys.exit(f"error: {err}")
