"""Per-instance ensemble of two models' top-N lists: fixed and memorization-aware weights (spec memgen.md §4).

Model A is the one whose weight is alpha (the spec's SASRec: a model that scores all items,
so it has a max softmax probability, MSP); model B gets 1 - alpha (the spec's TIGER). Per
instance:

1. each model's N scores are min-max normalised, s' = (s - min) / (max - min), all 1 when
   max == min; non-finite scores (dead beams) count as the row's minimum;
2. candidates = A's list, then B's items that A did not return (B order); a model's score
   for an item it did not return is 0; B's invalid beams (item -1) stay candidates that
   never match the target (spec [C]; they are not dropped);
3. fused = alpha * s'_A + (1 - alpha) * s'_B, ranked descending with a stable sort on that
   insertion order (ties: A's items in A's order, then B-only items in B's order);
4. metrics on the fused list: NDCG@K = 1/log2(rank + 1) when the target is in the top K,
   Recall@K (= Hit@K) and MRR@K, one target per instance.

alpha is a constant (``fixed``) or ``sigmoid(k * (MSP_A - tau))`` (``adaptive``).
Selection uses validation NDCG@10 only (first best wins, in the spec's loop order):
fixed alpha over ``ensemble_alphas``, adaptive k (outer) x tau (inner) over
``ensemble_ks`` x ``ensemble_taus``; the grids are arguments (the command line and compare
read them from ``properties/overall.yaml``). :func:`select` never sees test data;
:func:`run_ensemble` chooses on ``valid`` and reports ``test``.
"""

import os

import numpy as np

from recbole_genrec.errors import UserError

SELECT_METRIC = "ndcg@10"


class EnsembleError(UserError, ValueError):
    """The two prediction files cannot be fused (no MSP for the adaptive weight, misaligned)."""


def minmax(scores):
    """Row-wise min-max normalisation of ``[M, N]`` scores (see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(s)
    lo = np.where(finite, s, np.inf).min(1, keepdims=True)
    hi = np.where(finite, s, -np.inf).max(1, keepdims=True)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, 0.0)
    s = np.where(finite, s, lo)
    span = hi - lo
    return np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)


class Fuser:
    """Precomputed candidate layout of one split, so each alpha costs one sort.

    ``items_a, scores_a [M, Na]``, ``items_b, scores_b [M, Nb]``, ``target [M]``.
    """

    def __init__(self, items_a, scores_a, items_b, scores_b, target):
        items_a, items_b = np.asarray(items_a), np.asarray(items_b)
        sa, sb = minmax(scores_a), minmax(scores_b)
        # where B's j-th item sits in A's list (-1: not there), by a sorted (row, item) key
        M, Na = items_a.shape
        width = int(max(items_a.max(initial=0), items_b.max(initial=0))) + 2
        rows = np.arange(M, dtype=np.int64)[:, None]
        keys_a = (rows * width + items_a + 1).ravel()
        order = np.argsort(keys_a, kind="stable")
        keys_b = rows * width + items_b + 1
        pos = np.minimum(np.searchsorted(keys_a[order], keys_b), len(order) - 1)
        found = (keys_a[order][pos] == keys_b) & (items_b >= 0)
        where_a = np.where(found, order[pos] % Na, -1)  # [M, Nb]
        in_a = where_a >= 0
        sb_on_a = np.zeros_like(sa)  # B's score of A's items
        r, j = np.nonzero(in_a)
        sb_on_a[r, where_a[r, j]] = sb[r, j]
        self.items = np.concatenate([items_a, np.where(in_a, -2, items_b)], 1)
        self.score_a = np.concatenate([sa, np.zeros_like(sb)], 1)
        self.score_b = np.concatenate([sb_on_a, np.where(in_a, 0.0, sb)], 1)
        self.dropped = np.concatenate([np.zeros_like(sa, dtype=bool), in_a], 1)  # duplicates of A's items
        self.target = np.asarray(target)

    def ranked(self, alpha, k=None):
        """``[M, k]`` fused item lists for weight ``alpha`` (scalar or ``[M]``)."""
        alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (len(self.target),))[:, None]
        fused = alpha * self.score_a + (1.0 - alpha) * self.score_b
        fused = np.where(self.dropped, -np.inf, fused)
        order = np.argsort(-fused, axis=1, kind="stable")
        k = k or order.shape[1]
        return np.take_along_axis(self.items, order[:, :k], 1)

    def metrics(self, alpha, topk=(10,)):
        return list_metrics(self.ranked(alpha, max(topk)), self.target, topk)


def target_ranks(ranked, target):
    """1-based rank of the target in each ``[M, K]`` list, 0 when absent."""
    hit = ranked == np.asarray(target)[:, None]
    return np.where(hit.any(1), hit.argmax(1) + 1, 0)


def per_instance(ranked, target, k=10):
    """Per-instance ``(recall@k, ndcg@k)`` arrays of ``[M, >=k]`` ranked lists."""
    rank = target_ranks(np.asarray(ranked)[:, :k], target)
    ndcg = np.where(rank > 0, 1.0 / np.log2(np.maximum(rank, 1) + 1.0), 0.0)
    return (rank > 0).astype(np.float64), ndcg


def list_metrics(ranked, target, topk=(10,)):
    """RecBole-named means (``recall@k``, ``ndcg@k``, ``mrr@k``, ``hit@k``, ``precision@k``) of ranked lists."""
    rank = target_ranks(ranked, target)
    out = {}
    for k in topk:
        inside = (rank > 0) & (rank <= k)
        out[f"recall@{k}"] = float(inside.mean())
        out[f"ndcg@{k}"] = float(np.where(inside, 1.0 / np.log2(np.maximum(rank, 1) + 1.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(inside, 1.0 / np.maximum(rank, 1), 0.0).mean())
        out[f"hit@{k}"] = out[f"recall@{k}"]
        out[f"precision@{k}"] = out[f"recall@{k}"] / k
    return out


def adaptive_alpha(msp, k, tau):
    """alpha = sigmoid(k * (MSP - tau)) (e.g. MSP 0.3, k 10, tau 0.2 -> 0.731)."""
    return 1.0 / (1.0 + np.exp(-(k * (np.asarray(msp, dtype=np.float64) - tau))))


def select(valid, alphas, ks, taus):
    """Choose the fixed alpha and the adaptive (k, tau) on validation NDCG@10 (first best wins).

    ``valid``: dict with ``items_a, scores_a, items_b, scores_b, target`` and ``msp_a``
    (None: no adaptive ensemble). Only these validation arrays are read.
    """
    fuser = Fuser(valid["items_a"], valid["scores_a"], valid["items_b"], valid["scores_b"], valid["target"])
    best_alpha, best = None, -np.inf
    for alpha in alphas:
        score = fuser.metrics(alpha)[SELECT_METRIC]
        if score > best:
            best_alpha, best = float(alpha), score
    chosen = {"fixed": {"alpha": best_alpha, "valid_" + SELECT_METRIC: best}}
    if valid.get("msp_a") is not None:
        best_kt, best = None, -np.inf
        for k in ks:
            for tau in taus:
                score = fuser.metrics(adaptive_alpha(valid["msp_a"], k, tau))[SELECT_METRIC]
                if score > best:
                    best_kt, best = (float(k), float(tau)), score
        chosen["adaptive"] = {"k": best_kt[0], "tau": best_kt[1], "valid_" + SELECT_METRIC: best}
    return chosen


def pair_arrays(pred_a, pred_b, split):
    """The arrays :func:`select` / :class:`Fuser` need, from two loaded predictions files."""
    a, b = pred_a.split(split), pred_b.split(split)
    if not (np.array_equal(a["user"], b["user"]) and np.array_equal(a["target"], b["target"])):
        raise EnsembleError(
            f"'{pred_a.path}' and '{pred_b.path}' ({split}) list other instances or targets. "
            "Fix: save both with the same config files."
        )
    msp = a["msp"] if pred_a.scores_all_items and np.isfinite(a["msp"]).all() else None
    return {"items_a": a["items"], "scores_a": a["scores"], "items_b": b["items"], "scores_b": b["scores"],
            "target": a["target"], "msp_a": msp}


def run_ensemble(pred_a, pred_b, alphas, ks, taus, topk=(10,)):
    """Select on validation, report test: single models, fixed and adaptive ensembles.

    Returns ``{"chosen": ..., "test": {name: metrics}, "valid": {...}, "alpha_test": [M]}``;
    names are ``A``, ``B``, ``A+B fixed``, ``A+B adaptive`` with the model names filled in.
    """
    if not pred_a.scores_all_items and pred_b.scores_all_items:
        raise EnsembleError(
            f"The first predictions file must be the model that scores all items (its MSP sets alpha): "
            f"swap '{pred_a.path}' and '{pred_b.path}'."
        )
    valid = pair_arrays(pred_a, pred_b, "valid")
    test = pair_arrays(pred_a, pred_b, "test")
    chosen = select(valid, alphas, ks, taus)
    na, nb = pred_a.model, pred_b.model
    result = {"chosen": chosen, "test": {}, "valid": {}, "models": [na, nb]}
    for split, arrays in (("valid", valid), ("test", test)):
        fuser = Fuser(arrays["items_a"], arrays["scores_a"], arrays["items_b"], arrays["scores_b"], arrays["target"])
        rows = {
            na: list_metrics(arrays["items_a"], arrays["target"], topk),
            nb: list_metrics(arrays["items_b"], arrays["target"], topk),
            f"{na}+{nb} fixed": fuser.metrics(chosen["fixed"]["alpha"], topk),
        }
        if "adaptive" in chosen:
            alpha = adaptive_alpha(arrays["msp_a"], chosen["adaptive"]["k"], chosen["adaptive"]["tau"])
            rows[f"{na}+{nb} adaptive"] = fuser.metrics(alpha, topk)
            if split == "test":
                result["alpha_test"] = alpha
        result[split] = rows
    best_single = max(result["test"][na][SELECT_METRIC], result["test"][nb][SELECT_METRIC])
    result["gain_pct"] = {
        name: (m[SELECT_METRIC] - best_single) / best_single * 100.0 if best_single > 0 else float("nan")
        for name, m in result["test"].items()
    }
    return result


def grids_from(overrides=()):
    """The selection grids: ``properties/overall.yaml`` defaults, then ``--ensemble_*=[...]`` overrides."""
    import yaml

    from recbole_genrec.config import PROPERTIES_DIR, load_yaml_file

    defaults = load_yaml_file(os.path.join(PROPERTIES_DIR, "overall.yaml"))
    grids = {key: defaults[key] for key in ("ensemble_alphas", "ensemble_ks", "ensemble_taus")}
    for arg in overrides:
        key, _, value = arg[2:].partition("=")
        if key in grids:
            grids[key] = yaml.safe_load(value)
    return grids


def compare_rows(paths, topk, overrides=()):
    """Rows ``A+B fixed`` / ``A+B adaptive`` of the comparison table, for every pair of a model
    that scores all items (A) with a generative model (B). ``paths``: {model: predictions file}."""
    from recbole_genrec.analysis.predictions import check_compatible, load_predictions

    preds = {m: load_predictions(p) for m, p in paths.items() if os.path.isfile(p)}
    grids = grids_from(overrides)
    rows = {}
    for a_name, a in preds.items():
        for b_name, b in preds.items():
            if not a.scores_all_items or b.scores_all_items:
                continue
            check_compatible([a, b])
            result = run_ensemble(a, b, grids["ensemble_alphas"], grids["ensemble_ks"], grids["ensemble_taus"], topk)
            for kind in ("fixed", "adaptive"):
                name = f"{a.model}+{b.model} {kind}"
                if name in result["test"]:
                    rows[f"{a_name}+{b_name} {kind}"] = {
                        "test_result": result["test"][name],
                        "ensemble": {"chosen": result["chosen"][kind], "gain_pct_ndcg@10": result["gain_pct"][name]},
                    }
    return rows
