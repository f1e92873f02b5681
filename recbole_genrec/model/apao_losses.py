"""APAO loss math (spec: apao.md §3-§5), model-free so each piece is testable on its own.

Notation: a batch of ``B`` examples, item IDs of ``L`` code tokens, prefix lengths
``t = 1..L``. ``logp[b, j] = log p(y_j | x, y_<j)`` is the full-vocabulary log-softmax
(logits already divided by ``ce_tau``) of the ``j``-th code token under teacher forcing.

* :func:`pointwise_prefix_losses` -- ``l_t = mean_b[-(1/(t tau_p)) sum_{j<=t} logp_j]``.
* :func:`pairwise_prefix_losses` -- sampled softmax over prefixes, positive in column 0,
  ``K`` negatives, duplicate prefixes masked (:func:`first_occurrence_mask`), negatives
  scaled by ``kappa_t = (N_t - 1) / (1 + m_t)`` (:func:`kappa`), computed in **log space**.
* :func:`adaptive_weights` -- detached worst-prefix weights ``w ∝ l * exp(eta l)``.
* :func:`apao_objective` -- ``CE + beta * sum_t w_t l_t`` (or without CE).

Prefixes are compared through dense **prefix ids** (:func:`prefix_ids`): for every item and
every ``t`` an int64 that is equal for two items iff their length-``t`` prefixes are equal.
They are computed once from the catalogue (``torch.unique`` per level, so no overflow however
large the codebooks), which also gives ``N_t`` (:func:`prefix_counts`).
"""

from typing import Optional, Tuple

import torch

__all__ = [
    "prefix_ids", "prefix_counts", "first_occurrence_mask", "kappa", "pointwise_prefix_losses",
    "pairwise_prefix_losses", "pairwise_loss_direct", "prefix_ranking_stats", "adaptive_weights", "token_weights",
    "apao_objective",
]  # fmt: skip


def prefix_ids(item_sid: torch.Tensor) -> torch.Tensor:
    """Dense id of every item's length-``t`` prefix, ``[n_items, L]`` (column ``t-1`` = length ``t``).

    Row 0 (RecBole's padding item) gets id ``-1`` at every length, so it never equals a real
    item's prefix. Ids of real items at length ``t`` lie in ``[0, N_t)``.
    """
    item_sid = torch.as_tensor(item_sid, dtype=torch.long)
    n, L = item_sid.shape
    out = torch.full((n, L), -1, dtype=torch.long, device=item_sid.device)
    for t in range(1, L + 1):
        _, inverse = torch.unique(item_sid[1:, :t], dim=0, return_inverse=True)
        out[1:, t - 1] = inverse
    return out


def prefix_counts(pids: torch.Tensor) -> torch.Tensor:
    """``N_t``: the number of distinct length-``t`` prefixes among the real items, ``[L]``."""
    return pids[1:].max(0).values + 1


def first_occurrence_mask(pid: torch.Tensor) -> torch.Tensor:
    """``keep[..., c]`` = candidate ``c`` is the first of its row holding its prefix id.

    ``pid``: ``[..., C]`` prefix ids of the candidates, positive in column 0. A negative
    equal to the positive, or to an earlier negative, is dropped; column 0 is always kept.
    Vectorised: a stable sort per row puts equal ids together in column order, so the first
    element of each run is the first occurrence.
    """
    sorted_pid, order = torch.sort(pid, dim=-1, stable=True)
    new_run = torch.ones_like(sorted_pid, dtype=torch.bool)
    new_run[..., 1:] = sorted_pid[..., 1:] != sorted_pid[..., :-1]
    return torch.zeros_like(new_run).scatter(-1, order, new_run)


def kappa(n_prefixes: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``kappa_t = (N_t - 1) / (1 + m_t)``, ``m_t`` = kept negatives of the row.

    ``n_prefixes``: ``[L]``; ``keep``: ``[B, L, 1+K]`` (column 0 = positive, always kept).
    Returns ``[B, L]``. The ``1 +`` counts the positive, as the reference code does.
    """
    m = keep[..., 1:].sum(-1).to(torch.float32)  # [B, L]
    return (n_prefixes.to(torch.float32) - 1.0).unsqueeze(0) / (1.0 + m)


def pointwise_prefix_losses(logp: torch.Tensor, prefix_tau: float = 1.0) -> torch.Tensor:
    """``l_t = mean_b[-(1/(t tau_p)) sum_{j<=t} logp[b, j]]``, ``[L]`` (``logp``: ``[B, L]``)."""
    L = logp.shape[1]
    t = torch.arange(1, L + 1, device=logp.device, dtype=logp.dtype)
    return (-logp.cumsum(1) / (t * prefix_tau)).mean(0)


def pairwise_prefix_losses(
    scores: torch.Tensor, keep: torch.Tensor, n_prefixes: torch.Tensor, prefix_tau: float = 1.0, neg_scale: bool = True
) -> torch.Tensor:
    """Sampled-softmax prefix losses ``[L]`` in log space.

    Args:
        scores: ``[B, 1+K, L]`` prefix scores ``s_t(c) = sum_{j<=t} log p(c_j | x, c_<j)``,
            positive in column 0.
        keep: ``[B, L, 1+K]`` bool, :func:`first_occurrence_mask` of the prefix ids.
        n_prefixes: ``[L]`` ``N_t`` of the catalogue.
        prefix_tau: ``tau_p``; the scores are divided by it (``z = s / tau_p``).
        neg_scale: multiply the negatives by :func:`kappa` (reference default); else ``kappa = 1``.

    ``l_t = mean_b[-z_pos + logsumexp(z_pos, log kappa_t + z_neg(kept))] / t``, which is the
    reference ``-log(e^{z_pos} / (e^{z_pos} + kappa sum e^{z_neg} + 1e-12))`` without the
    ``1e-12`` (it only matters when every term underflows, i.e. where the reference is wrong).
    """
    B, C, L = scores.shape
    z = (scores / prefix_tau).transpose(1, 2)  # [B, L, 1+K]
    log_k = torch.log(kappa(n_prefixes, keep)).to(z.dtype) if neg_scale else z.new_zeros(B, L)  # N_t = 1: -inf, fine
    neg = torch.where(keep[..., 1:], z[..., 1:] + log_k.unsqueeze(-1), torch.full_like(z[..., 1:], float("-inf")))
    per_example = torch.logsumexp(torch.cat([z[..., :1], neg], -1), -1) - z[..., 0]  # [B, L]
    t = torch.arange(1, L + 1, device=z.device, dtype=z.dtype)
    return per_example.mean(0) / t


def pairwise_loss_direct(scores, keep, n_prefixes, prefix_tau=1.0, neg_scale=True, eps=1e-12):
    """The reference code's formula, literally (exp of the scores; underflows below ~-87).

    For tests: equals :func:`pairwise_prefix_losses` where it is finite and does not underflow.
    """
    B, C, L = scores.shape
    e = torch.exp(scores / prefix_tau).transpose(1, 2)  # [B, L, 1+K]
    k = kappa(n_prefixes, keep).to(e.dtype) if neg_scale else e.new_ones(B, L)
    denom = e[..., 0] + k * (e[..., 1:] * keep[..., 1:]).sum(-1) + eps
    t = torch.arange(1, L + 1, device=e.device, dtype=e.dtype)
    return (-torch.log(e[..., 0] / denom)).mean(0) / t


@torch.no_grad()
def prefix_ranking_stats(scores: torch.Tensor, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-prefix AUC and MRR of the positive among the kept candidates, each ``[L]``.

    AUC = mean over examples of the fraction of kept negatives scored below the positive
    (ties count 1/2; rows without kept negatives count 1). MRR = mean of
    ``1 / (1 + #kept negatives scored above the positive)``.
    """
    s = scores.transpose(1, 2)  # [B, L, 1+K]
    pos, neg, kn = s[..., :1], s[..., 1:], keep[..., 1:]
    below = ((neg < pos) & kn).sum(-1).float() + 0.5 * ((neg == pos) & kn).sum(-1).float()
    m = kn.sum(-1).float()
    auc = torch.where(m > 0, below / m.clamp(min=1), torch.ones_like(m)).mean(0)
    above = ((neg > pos) & kn).sum(-1).float()
    mrr = (1.0 / (1.0 + above)).mean(0)
    return auc, mrr


@torch.no_grad()
def adaptive_weights(losses: torch.Tensor, eta: float = 0.0) -> torch.Tensor:
    """Worst-prefix weights ``[L]`` from the (detached) prefix losses, spec §4.

    Non-finite losses count as 0; ``w = l / sum l`` (uniform if ``|sum l| < 1e-12``), then
    ``w *= exp(eta l)`` and renormalise. ``exp(eta (l - max l))`` is used instead of
    ``exp(eta l)``: the same weights after normalisation, but no overflow for large ``eta``
    (the reference's ``+1e-12`` in the last denominator is dropped; the sum is >= the
    largest weight, which is > 0 here).
    """
    l = losses.detach().float()
    l = torch.where(torch.isfinite(l), l, torch.zeros_like(l))
    total = l.sum()
    w = l / total if total.abs() >= 1e-12 else torch.full_like(l, 1.0 / l.numel())
    if eta != 0.0:
        w = w * torch.exp(eta * (l - l.max()))
    s = w.sum()
    return w / s if s.abs() > 0 else torch.full_like(l, 1.0 / l.numel())


def token_weights(weights: torch.Tensor, prefix_tau: float = 1.0) -> torch.Tensor:
    """Token weights of the pointwise loss under fixed prefix weights: ``sum_{t>=j} w_t / (t tau_p)``.

    ``sum_t w_t l_t^pointwise == mean_b[-sum_j token_weights[j] * logp[b, j]]`` (spec §3).
    """
    L = weights.shape[0]
    t = torch.arange(1, L + 1, device=weights.device, dtype=weights.dtype)
    return (weights / (t * prefix_tau)).flip(0).cumsum(0).flip(0)


def apao_objective(
    ce: torch.Tensor, losses: torch.Tensor, beta: float, eta: float = 0.0, wo_ce: bool = False,
    weights: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(L, w)`` with ``L = CE + beta * sum_t w_t l_t`` (``beta * sum w l`` if ``wo_ce``).

    ``w`` = :func:`adaptive_weights` unless given. Non-finite ``l_t`` contribute 0 (as in
    the reference code); gradients flow only through ``l``.
    """
    w = adaptive_weights(losses, eta) if weights is None else weights.detach()
    finite = torch.where(torch.isfinite(losses), losses, torch.zeros_like(losses))
    prefix = beta * (w.to(finite.dtype) * finite).sum()
    return (prefix if wo_ce else ce + prefix), w
