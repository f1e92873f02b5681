"""GenPAS: generalized (input, target) training-pair sampling for sequential recommenders.

Lee et al., "Sequential Data Augmentation for Generative Recommendation" (arXiv 2509.13648).
Spec: ``shared/specs/genpas.md``. This module is pure numpy math; the RecBole train loader is
:mod:`recbole_genrec.data.dataloader` and the training-free search is
:mod:`recbole_genrec.analysis.genpas_search`.

Notation (1-based, as in the spec). User ``u`` has a training part ``s = (s_1..s_n)``. A pair is
``x = (s_i..s_{t-1}) -> y = s_t`` with ``1 <= i < t <= n``, drawn i.i.d. in three steps::

    P(u)       ∝ (n_u - 1)^alpha        over users with n_u >= 2
    P(t | u)   ∝ (t - 1)^beta           t in {2..n_u}
    P(i | u,t) ∝ i^gamma                i in {1..t-1}   (i = start of the input window)

and the model sees the last ``L = MAX_ITEM_LIST_LENGTH`` items of ``x``.
Infinite exponents are limits, coded explicitly: ``+inf`` puts all mass on the largest base,
``-inf`` on the smallest, ties split uniformly. Finite exponents are evaluated in log space, so
``alpha = 300`` is as safe as ``alpha = 1``.

Presets (spec Table 3): ``LT = (0, inf, -inf)``, ``MT = (1, 0, -inf)``, ``SW = (2, 1, 0)``.
``MT`` is RecBole's own prefix augmentation. The parametric ``SW`` is uniform over the windows of a
user but gives user ``u`` the mass ``(n-1)^2`` instead of the exact window count ``n(n-1)/2``,
i.e. an extra per-user factor ``2(n-1)/n`` (the paper's KL numbers use the parametric form).
``enumerate`` mode (presets only) emits the exact classic pair sets instead: MT = every prefix
pair (RecBole's training interactions pair for pair), LT = one pair per user, SW = every
contiguous window, each exactly once per epoch, shuffled.

Decisions where the paper is silent (spec "(decide)"):

* gamma's base is the window start ``i`` (``i^gamma``), not the input length.
* Truncation ``cut`` (default): draw ``i`` over ``{1..t-1}``, then keep the last ``L`` items.
  ``restrict`` draws ``i`` over ``{max(1, t-L)..t-1}`` only (same ``i^gamma`` bases).
* Pairs per epoch default to the MT count ``sum_u (n_u - 1)``, so every scheme gets the same
  budget (``users``, an int, or ``"<float>x"`` of the MT count are accepted).
* Users with ``n_u < 2`` have no pair; they are dropped before any weight is computed (``0^alpha``
  would be infinite for ``alpha < 0``). They still get validation/test pairs from RecBole.
"""

import math
from dataclasses import dataclass

import numpy as np

from recbole_genrec.errors import ConfigError

INF = math.inf

PRESETS = {
    "LT": (0.0, INF, -INF),
    "MT": (1.0, 0.0, -INF),
    "SW": (2.0, 1.0, 0.0),
}
SAMPLER_CHOICES = ("default", "LT", "MT", "SW", "genpas")
MODES = ("sample", "enumerate")
TRUNCATIONS = ("cut", "restrict")
KL_EPS = 1e-10
EXPONENT_KEYS = ("genpas_alpha", "genpas_beta", "genpas_gamma")


# --------------------------------------------------------------------------- parsing


def parse_exponent(value, key):
    """A bias exponent from config: a real number, ``inf``/``-inf`` (any case), or ``None``.

    Raises ``ValueError`` naming ``key`` for NaN, booleans and non-numeric strings.
    """
    if isinstance(value, bool):
        raise ConfigError(f"Config key '{key}' must be a number or 'inf'/'-inf', got {value!r}.")
    text = value
    if isinstance(value, str):
        text = value.strip().lower().replace("infinity", "inf")
        if text.lstrip("+-.") == "inf":
            return -INF if text.startswith("-") else INF
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise ConfigError(
            f"Config key '{key}' must be a number or 'inf'/'-inf', got {value!r}. "
            f"Fix: e.g. --{key}=1 or --{key}=-inf."
        ) from None
    if math.isnan(number):
        raise ConfigError(f"Config key '{key}' is NaN. Fix: give a number or 'inf'/'-inf'.")
    return number


def format_exponent(x):
    """``inf``/``-inf``/shortest number text, as accepted back by :func:`parse_exponent`."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


def parse_pairs_per_epoch(value, n_mt, n_users, key="genpas_pairs_per_epoch"):
    """Pairs per epoch: ``mt`` (= ``n_mt``), ``users`` (= ``n_users``), an int >= 1, or ``"<f>x"``.

    ``"<f>x"`` is ``round(f * n_mt)`` (at least 1), e.g. ``"0.5x"``. A bare float is refused because
    it is ambiguous (count or multiple?).
    """
    fix = f"Fix: use mt, users, a positive int or a multiple of the MT count such as 0.5x (--{key}=mt)."
    if value is None:
        return int(n_mt)
    if isinstance(value, bool):
        raise ConfigError(f"Config key '{key}' got {value!r}. {fix}")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ConfigError(f"Config key '{key}' must be >= 1, got {value}. {fix}")
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "mt":
            return int(n_mt)
        if text == "users":
            return int(n_users)
        if text.endswith("x"):
            try:
                factor = float(text[:-1])
            except ValueError:
                raise ConfigError(f"Config key '{key}' got {value!r}. {fix}") from None
            if not math.isfinite(factor) or factor <= 0:
                raise ConfigError(f"Config key '{key}' needs a positive finite multiple, got {value!r}. {fix}")
            return max(1, int(round(factor * n_mt)))
        if text.isdigit():
            return parse_pairs_per_epoch(int(text), n_mt, n_users, key)
    raise ConfigError(f"Config key '{key}' got {value!r}. {fix}")


@dataclass(frozen=True)
class SamplerSpec:
    """What ``train_sampler`` + ``genpas_*`` keys resolve to."""

    name: str  # LT | MT | SW | genpas
    alpha: float
    beta: float
    gamma: float
    mode: str = "sample"
    truncation: str = "cut"

    @property
    def theta(self):
        return (self.alpha, self.beta, self.gamma)

    def preset(self):
        """The preset whose triple equals ``theta`` (or ``None``)."""
        return preset_name(self.theta) or None


def preset_name(theta):
    """The first preset whose (alpha, beta, gamma), or (alpha, beta) for a pair, is ``theta``; else ``""``."""
    return next((name for name, triple in PRESETS.items() if triple[: len(theta)] == tuple(theta)), "")


def _or(value, unset):
    return unset if value is None else value


def sampler_spec_from_config(config):
    """Resolve the sampler keys of a RecBole config (or dict); ``None`` for RecBole's default.

    ``train_sampler``: ``default``/``None`` -> ``None``; ``LT``/``MT``/``SW`` -> the preset triple
    (``genpas_alpha/beta/gamma`` are ignored); ``genpas`` -> ``genpas_alpha/beta/gamma``, where an
    unset (null) exponent takes MT's value (1, 0, -inf).
    """
    name = _or(config["train_sampler"], "default")
    if not isinstance(name, str):
        raise ConfigError(
            f"Config key 'train_sampler' got {name!r}. Fix: one of {', '.join(SAMPLER_CHOICES)}."
        )
    canon = {c.lower(): c for c in SAMPLER_CHOICES}.get(name.strip().lower())
    if canon is None:
        raise ConfigError(
            f"Config key 'train_sampler' got unknown sampler {name!r}. "
            f"Fix: one of {', '.join(SAMPLER_CHOICES)}."
        )
    if canon == "default":
        return None
    mode = str(config["genpas_mode"]).strip().lower()
    if mode not in MODES:
        raise ConfigError(f"Config key 'genpas_mode' got {mode!r}. Fix: one of {', '.join(MODES)}.")
    truncation = str(config["genpas_truncation"]).strip().lower()
    if truncation not in TRUNCATIONS:
        raise ConfigError(
            f"Config key 'genpas_truncation' got {truncation!r}. Fix: one of {', '.join(TRUNCATIONS)}."
        )
    if canon in PRESETS:
        theta = PRESETS[canon]
    else:
        theta = [parse_exponent(_or(config[key], mt), key) for key, mt in zip(EXPONENT_KEYS, PRESETS["MT"])]
    spec = SamplerSpec(canon, *theta, mode, truncation)
    if mode == "enumerate" and spec.preset() is None:
        raise ConfigError(
            f"Config key 'genpas_mode' is 'enumerate', which exists only for the presets LT/MT/SW, "
            f"but (alpha, beta, gamma) = {tuple(map(format_exponent, spec.theta))}. "
            "Fix: --genpas_mode=sample, or --train_sampler=LT|MT|SW."
        )
    return spec


# --------------------------------------------------------------------------- weights


def grouped_power_probs(bases, offsets, x):
    """Probabilities ``∝ bases**x`` normalised within contiguous groups ``offsets`` (CSR).

    ``bases >= 1``; every group non-empty. ``x = +inf`` -> uniform over each group's largest base,
    ``x = -inf`` -> over its smallest (ties split uniformly). Finite ``x`` in log space.
    """
    bases = np.asarray(bases, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    sizes = np.diff(offsets)
    if bases.size == 0:
        return bases.copy()
    if np.any(sizes <= 0):
        raise ValueError("grouped_power_probs: every group must be non-empty.")
    if np.any(bases < 1):
        raise ValueError("grouped_power_probs: every base must be >= 1.")
    x = float(x)
    if math.isnan(x):
        raise ValueError("grouped_power_probs: exponent is NaN.")
    gid = np.repeat(np.arange(sizes.size), sizes)
    starts = offsets[:-1]
    if x == 0:
        w = np.ones_like(bases)
    else:
        logb = np.log(bases)
        if math.isinf(x):
            key = logb if x > 0 else -logb
            w = (key == np.maximum.reduceat(key, starts)[gid]).astype(np.float64)
        else:
            lw = x * logb
            w = np.exp(lw - np.maximum.reduceat(lw, starts)[gid])
    return w / np.add.reduceat(w, starts)[gid]


def power_probs(bases, x):
    """Probabilities ``∝ bases**x`` over one group (see :func:`grouped_power_probs`)."""
    bases = np.asarray(bases, dtype=np.float64)
    return grouped_power_probs(bases, [0, bases.size], x)


def user_probs(lengths, alpha):
    """``P(u) ∝ (n_u - 1)^alpha``; users with ``n_u < 2`` get probability 0."""
    lengths = np.asarray(lengths, dtype=np.int64)
    probs = np.zeros(lengths.size, dtype=np.float64)
    ok = lengths >= 2
    if not ok.any():
        raise ConfigError("GenPAS: no user has >= 2 training items, so there is no training pair.")
    probs[ok] = power_probs(lengths[ok] - 1, alpha)
    return probs


def group_positions(sizes):
    """``(offsets, k)`` of consecutive groups of ``sizes``: the CSR offsets and each element's 0-based
    position within its group."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return offsets, np.arange(offsets[-1]) - np.repeat(offsets[:-1], sizes)


def _cdf(probs):
    return np.cumsum(probs), int(np.flatnonzero(probs > 0)[-1])


def _draw(cdf_last, r):
    cdf, last = cdf_last
    return np.minimum(np.searchsorted(cdf, r * cdf[-1], side="right"), last)


# --------------------------------------------------------------------------- sequences


@dataclass
class Sequences:
    """Per-user training parts as CSR: user row ``k`` is ``items[offsets[k]:offsets[k+1]]``.

    ``user_ids`` are the RecBole internal ids of the rows (or ``arange`` for toys).
    """

    items: np.ndarray  # [total] int64
    offsets: np.ndarray  # [n_rows + 1] int64
    user_ids: np.ndarray  # [n_rows] int64

    @classmethod
    def from_lists(cls, seqs, user_ids=None):
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.array([v for s in seqs for v in s], dtype=np.int64)
        ids = np.arange(len(seqs), dtype=np.int64) if user_ids is None else np.asarray(user_ids, np.int64)
        return cls(items, offsets, ids)

    @property
    def lengths(self):
        return np.diff(self.offsets)

    def n_mt_pairs(self):
        return int(np.maximum(self.lengths - 1, 0).sum())

    def n_pair_users(self):
        return int((self.lengths >= 2).sum())

    def window(self, row, t, i, max_len=None):
        """The input/target of one pair (for tests and reports): ``(list, target)``."""
        off = self.offsets[row]
        start = i if max_len is None else max(i, t - max_len)
        return self.items[off + start - 1 : off + t - 1].tolist(), int(self.items[off + t - 1])


def target_probs_per_position(seqs, alpha, beta):
    """Exact ``P(u) P(t|u)`` for every position of ``seqs.items`` (0 at each user's first item)."""
    lengths = seqs.lengths
    pu = user_probs(lengths, alpha)
    rows = np.flatnonzero(lengths >= 2)
    sizes = lengths[rows] - 1
    offs, k = group_positions(sizes)
    tm1 = k + 1  # t - 1 in 1..n-1
    pt = grouped_power_probs(tm1, offs, beta)
    out = np.zeros(seqs.items.size, dtype=np.float64)
    pos = np.repeat(seqs.offsets[rows], sizes) + tm1  # index of s_t
    out[pos] = np.repeat(pu[rows], sizes) * pt
    return out


def target_distribution(seqs, alpha, beta, n_items):
    """``p_theta(v) = sum_u P(u) sum_t P(t|u) [s_{u,t} = v]`` as a length-``n_items`` vector."""
    return np.bincount(seqs.items, weights=target_probs_per_position(seqs, alpha, beta), minlength=n_items)[:n_items]


def kl_divergence(q, p, eps=KL_EPS):
    """``KL(q || p)`` after adding ``eps`` to every entry of both and renormalising (spec §3)."""
    q = np.asarray(q, dtype=np.float64) + eps
    p = np.asarray(p, dtype=np.float64) + eps
    q = q / q.sum()
    p = p / p.sum()
    return float(np.sum(q * np.log(q / p)))


# --------------------------------------------------------------------------- sampler


class GenPASSampler:
    """Draws ``(row, t, i)`` pairs from :class:`Sequences` (1-based ``t``, ``i``; see module doc).

    Args:
        seqs: training parts.
        alpha, beta, gamma: bias exponents (floats, ``±inf`` allowed).
        max_len: ``MAX_ITEM_LIST_LENGTH`` (``None`` = no cut).
        truncation: ``cut`` or ``restrict`` (see module doc).
    """

    def __init__(self, seqs, alpha, beta, gamma, max_len=None, truncation="cut"):
        for key, x in zip(EXPONENT_KEYS, (alpha, beta, gamma)):
            parse_exponent(x, key)
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}.")
        if max_len is not None and int(max_len) < 1:
            raise ValueError(f"MAX_ITEM_LIST_LENGTH must be >= 1, got {max_len}.")
        self.seqs = seqs
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.max_len = None if max_len is None else int(max_len)
        self.truncation = truncation
        self.lengths = seqs.lengths
        self._user_cdf = _cdf(user_probs(self.lengths, self.alpha))
        self._t_cdfs = {}  # the draw tables of target_table(n) and input_table(t), cached per key
        self._i_cdfs = {}

    def target_table(self, n):
        """``P(t | n)`` for ``t = 2..n`` (array of length ``n - 1``)."""
        return power_probs(np.arange(1, n), self.beta)

    def input_low(self, t):
        """Smallest allowed window start for target ``t``."""
        return self.window_low(t) if self.truncation == "restrict" else 1

    def input_table(self, t):
        """``P(i | t)`` for ``i = input_low(t)..t-1``."""
        return power_probs(np.arange(self.input_low(t), t), self.gamma)

    def _grouped_draw(self, keys, table, cdfs, r):
        out = np.empty(keys.size, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        uniq, starts = np.unique(keys[order], return_index=True)
        bounds = np.append(starts, keys.size)
        for k, key in enumerate(uniq.tolist()):  # one iteration per distinct length, not per user
            idx = order[bounds[k] : bounds[k + 1]]
            if key not in cdfs:
                cdfs[key] = _cdf(table(key))
            out[idx] = _draw(cdfs[key], r[idx])
        return out

    def sample(self, n_pairs, rng):
        """``n_pairs`` i.i.d. pairs as arrays ``(rows, t, i)``."""
        n_pairs = int(n_pairs)
        rows = _draw(self._user_cdf, rng.random(n_pairs))
        n = self.lengths[rows]
        t = self._grouped_draw(n, self.target_table, self._t_cdfs, rng.random(n_pairs)) + 2
        low = np.array([self.input_low(v) for v in range(int(t.max(initial=1)) + 1)], dtype=np.int64)
        i = self._grouped_draw(t, self.input_table, self._i_cdfs, rng.random(n_pairs)) + low[t]
        return rows, t, i

    def pair_probabilities(self):
        """Every ``(row, t, i)`` with its exact probability (for tests and the A/D search)."""
        rows, t, i = enumerate_pairs(self.seqs, "SW")
        if self.truncation == "restrict" and self.max_len is not None:
            keep = i >= np.maximum(1, t - self.max_len)
            rows, t, i = rows[keep], t[keep], i[keep]
        # P(t|u) per (row, t): positions of target t
        tm = target_probs_per_position(self.seqs, self.alpha, self.beta)
        p_ut = tm[self.seqs.offsets[rows] + t - 1]
        # P(i|t): groups of consecutive i for each (row, t) (enumerate_pairs orders them so)
        change = np.flatnonzero(np.diff(rows * (int(t.max(initial=1)) + 1) + t)) + 1
        offs = np.concatenate([[0], change, [rows.size]])
        p_i = grouped_power_probs(i, offs, self.gamma)
        return rows, t, i, p_ut * p_i

    def window_low(self, t):
        """Smallest start of a *truncated* input for target ``t``."""
        return 1 if self.max_len is None else max(1, t - self.max_len)

    def window_table(self, t):
        """``P(start | t)`` over truncated starts ``window_low(t)..t-1``.

        Under ``cut`` every ``i <= t - L`` truncates to the start ``t - L``, so their mass is merged.
        """
        p = self.input_table(t)
        extra = self.window_low(t) - self.input_low(t)  # entries that collapse onto window_low(t)
        if extra > 0:
            p = np.concatenate([[p[: extra + 1].sum()], p[extra + 1 :]])
        return p

    def n_windows(self):
        """Number of distinct truncated inputs ``(row, t, start)`` (what :meth:`exact_windows` builds)."""
        _, t, _ = enumerate_pairs(self.seqs, "MT")
        sizes = t - 1 if self.max_len is None else np.minimum(t - 1, self.max_len)
        return int(sizes.sum())

    def exact_windows(self):
        """Distinct truncated inputs ``(row, t, start)`` with their exact probability under theta.

        ``start = max(i, t - L)``: the model sees ``s_start..s_{t-1}`` and the target ``s_t``.
        """
        rows, t, _ = enumerate_pairs(self.seqs, "MT")
        tmax = int(t.max(initial=2))
        tables = [np.zeros(0)] * 2 + [self.window_table(v) for v in range(2, tmax + 1)]
        sizes_t = np.array([tb.size for tb in tables], dtype=np.int64)
        toff = np.concatenate([[0], np.cumsum(sizes_t)])
        flat = np.concatenate(tables)
        lows = np.array([0, 0] + [self.window_low(v) for v in range(2, tmax + 1)], dtype=np.int64)
        sizes = sizes_t[t]
        k = group_positions(sizes)[1]  # 0..size-1 within (row, t)
        t_w = np.repeat(t, sizes)
        rows_w = np.repeat(rows, sizes)
        p_ut = target_probs_per_position(self.seqs, self.alpha, self.beta)
        p = p_ut[self.seqs.offsets[rows_w] + t_w - 1] * flat[toff[t_w] + k]
        return rows_w, t_w, lows[t_w] + k, p


def enumerate_pairs(seqs, scheme):
    """The exact classic pair set of ``scheme`` as ``(rows, t, i)``, in user/t/i order.

    ``MT``: every prefix pair ``(1, t)``; ``LT``: ``(1, n)`` per user; ``SW``: every window
    ``1 <= i < t <= n``. Users with ``n < 2`` contribute nothing.
    """
    lengths = seqs.lengths
    rows = np.flatnonzero(lengths >= 2)
    if scheme == "LT":
        return rows, lengths[rows], np.ones(rows.size, dtype=np.int64)
    if scheme == "MT":
        sizes = lengths[rows] - 1
        t = group_positions(sizes)[1] + 2
        return np.repeat(rows, sizes), t, np.ones(t.size, dtype=np.int64)
    if scheme == "SW":
        r, t, _ = enumerate_pairs(seqs, "MT")
        sizes = t - 1  # i in 1..t-1
        return np.repeat(r, sizes), np.repeat(t, sizes), group_positions(sizes)[1] + 1
    raise ValueError(f"enumerate mode exists for LT, MT, SW only, got {scheme!r}.")


def draw_epoch_pairs(seqs, spec, max_len, n_pairs, rng, shuffle=True, sampler=None):
    """One epoch of ``(rows, t, i)`` for a :class:`SamplerSpec` (sample or enumerate mode).

    ``sampler``: a :class:`GenPASSampler` of ``spec`` to reuse (its per-length tables are cached).
    """
    if spec.mode == "enumerate":
        rows, t, i = enumerate_pairs(seqs, spec.preset())
        if shuffle:
            perm = rng.permutation(rows.size)
            rows, t, i = rows[perm], t[perm], i[perm]
        return rows, t, i
    if sampler is None:
        sampler = GenPASSampler(seqs, *spec.theta, max_len=max_len, truncation=spec.truncation)
    return sampler.sample(n_pairs, rng)


def epoch_rng(seed, epoch):
    """The numpy Generator of one epoch, seeded by ``(seed, epoch)``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
