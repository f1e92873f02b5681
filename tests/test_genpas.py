"""GenPAS sampler math (recbole_genrec.data.genpas): presets, weights, sampling, enumeration, KL."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from recbole_genrec.defaults import package_defaults
from recbole_genrec.data.genpas import (
    INF,
    PRESETS,
    GenPASSampler,
    Sequences,
    draw_epoch_pairs,
    enumerate_pairs,
    epoch_rng,
    grouped_power_probs,
    kl_divergence,
    parse_exponent,
    parse_pairs_per_epoch,
    power_probs,
    sampler_spec_from_config,
    target_distribution,
    user_probs,
)

# lengths 1 (no pair), 2, 3, 5, 5 (a tie for the longest), items distinct per position
TOY = Sequences.from_lists([[9], [1, 2], [3, 4, 5], [6, 7, 8, 1, 2], [3, 5, 7, 9, 2]])

GENPAS_DEFAULTS = package_defaults("genpas")  # a plain-dict config with genpas.yaml's defaults


def brute_force_probs(lengths, alpha, beta, gamma):
    """Spec §2 by definition, one (u, t, i) at a time; infinities as argmax/argmin limits."""

    def normalise(bases, x):
        if math.isinf(x):
            target = max(bases) if x > 0 else min(bases)
            w = [1.0 if b == target else 0.0 for b in bases]
        else:
            w = [b ** x for b in bases]
        s = sum(w)
        return [v / s for v in w]

    users = [u for u, n in enumerate(lengths) if n >= 2]
    pu = dict(zip(users, normalise([lengths[u] - 1 for u in users], alpha)))
    out = {}
    for u in users:
        n = lengths[u]
        pt = normalise(list(range(1, n)), beta)  # t = 2..n, base t-1
        for t in range(2, n + 1):
            pi = normalise(list(range(1, t)), gamma)  # i = 1..t-1, base i
            for i in range(1, t):
                p = pu[u] * pt[t - 2] * pi[i - 1]
                if p > 0:
                    out[(u, t, i)] = p
    return out


# ----------------------------------------------------------------------- config parsing


def test_parse_exponent_accepts_numbers_and_infinities():
    assert parse_exponent(2, "genpas_alpha") == 2.0
    assert parse_exponent("1.5", "genpas_alpha") == 1.5
    assert parse_exponent("inf", "genpas_beta") == INF
    assert parse_exponent("-inf", "genpas_gamma") == -INF
    assert parse_exponent("-Infinity", "genpas_gamma") == -INF
    assert parse_exponent(float("inf"), "genpas_beta") == INF


@pytest.mark.parametrize("bad", [float("nan"), "nan", "abc", True, [1], "1,5"])
def test_parse_exponent_rejects_bad_values_naming_the_key(bad):
    with pytest.raises(ValueError, match="genpas_beta"):
        parse_exponent(bad, "genpas_beta")


def test_presets_are_the_paper_triples():
    assert PRESETS == {"LT": (0, INF, -INF), "MT": (1, 0, -INF), "SW": (2, 1, 0)}
    for name, triple in PRESETS.items():
        spec = sampler_spec_from_config({**GENPAS_DEFAULTS, "train_sampler": name, "genpas_alpha": 7})
        assert spec.theta == triple and spec.name == name and spec.preset() == name
    assert sampler_spec_from_config({**GENPAS_DEFAULTS, "train_sampler": "default"}) is None
    assert sampler_spec_from_config({**GENPAS_DEFAULTS, "train_sampler": None}) is None
    assert sampler_spec_from_config({**GENPAS_DEFAULTS}) is None
    # genpas with unset exponents is MT; explicit ones are parsed (strings too)
    assert sampler_spec_from_config({**GENPAS_DEFAULTS, "train_sampler": "genpas"}).theta == PRESETS["MT"]
    spec = sampler_spec_from_config(
        {**GENPAS_DEFAULTS, "train_sampler": "genpas", "genpas_alpha": "-1", "genpas_beta": "inf", "genpas_gamma": 0.5}
    )
    assert spec.theta == (-1.0, INF, 0.5)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"train_sampler": "XX"}, "train_sampler"),
        ({"train_sampler": 3}, "train_sampler"),
        ({"train_sampler": "genpas", "genpas_alpha": "two"}, "genpas_alpha"),
        ({"train_sampler": "genpas", "genpas_gamma": float("nan")}, "genpas_gamma"),
        ({"train_sampler": "MT", "genpas_mode": "exact"}, "genpas_mode"),
        ({"train_sampler": "MT", "genpas_truncation": "left"}, "genpas_truncation"),
        ({"train_sampler": "genpas", "genpas_alpha": 0.5, "genpas_mode": "enumerate"}, "genpas_mode"),
    ],
)
def test_bad_sampler_config_raises_naming_the_key(config, key):
    with pytest.raises(ValueError, match=key):
        sampler_spec_from_config({**GENPAS_DEFAULTS, **config})


def test_pairs_per_epoch():
    assert parse_pairs_per_epoch("mt", 100, 7) == 100
    assert parse_pairs_per_epoch(None, 100, 7) == 100
    assert parse_pairs_per_epoch("users", 100, 7) == 7
    assert parse_pairs_per_epoch(42, 100, 7) == 42
    assert parse_pairs_per_epoch("42", 100, 7) == 42
    assert parse_pairs_per_epoch("0.5x", 100, 7) == 50
    assert parse_pairs_per_epoch("2x", 100, 7) == 200
    for bad in (0, -3, 1.5, "1.5", "x", "-1x", "nanx", "lots", True):
        with pytest.raises(ValueError, match="genpas_pairs_per_epoch"):
            parse_pairs_per_epoch(bad, 100, 7)


# ----------------------------------------------------------------------- weights


def test_power_probs_limits_and_ties():
    b = [1, 3, 3, 2]
    np.testing.assert_allclose(power_probs(b, INF), [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(power_probs(b, -INF), [1, 0, 0, 0])
    np.testing.assert_allclose(power_probs(b, 0), [0.25] * 4)
    np.testing.assert_allclose(power_probs(b, 1), np.array(b) / 9)
    # large finite exponents are computed in log space (no overflow, approaches the limit)
    big = power_probs(b, 5000.0)
    assert np.all(np.isfinite(big)) and big[1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=">= 1"):
        power_probs([0, 1], 1.0)


def test_grouped_power_probs_normalises_each_group():
    p = grouped_power_probs([1, 2, 1, 2, 3], [0, 2, 5], 1.0)
    np.testing.assert_allclose(p, [1 / 3, 2 / 3, 1 / 6, 2 / 6, 3 / 6])


def test_user_probs_drop_short_users_before_weighting():
    # alpha < 0 would make 0^alpha infinite: users with n < 2 are dropped first
    p = user_probs([1, 2, 3, 0], -2.0)
    assert p[0] == 0 and p[3] == 0
    np.testing.assert_allclose(p[1:3], [1 / 1.25, 0.25 / 1.25])
    with pytest.raises(ValueError, match="no training pair"):
        user_probs([1, 0, 1], 1.0)


# ----------------------------------------------------------------------- exact probabilities


THETAS = [
    PRESETS["MT"],
    PRESETS["LT"],
    PRESETS["SW"],
    (0.5, -1.0, 1.0),
    (INF, 1.0, 0.0),  # ties: the two users of length 5 share the mass
    (-INF, -INF, INF),  # shortest user (n=2), t=2, i=t-1
    (-2.0, 2.0, -1.0),
]


@pytest.mark.parametrize("theta", THETAS)
def test_pair_probabilities_match_the_definition(theta):
    sampler = GenPASSampler(TOY, *theta)
    rows, t, i, p = sampler.pair_probabilities()
    got = {(int(a), int(b), int(c)): float(q) for a, b, c, q in zip(rows, t, i, p) if q > 0}
    want = brute_force_probs(TOY.lengths.tolist(), *theta)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12)


@pytest.mark.parametrize("theta", THETAS)
def test_sampled_frequencies_match_analytic_probabilities(theta):
    """Chi-square goodness of fit of the vectorised sampler against the definition (p > 0.01)."""
    want = brute_force_probs(TOY.lengths.tolist(), *theta)
    n = 20000
    rows, t, i = GenPASSampler(TOY, *theta).sample(n, np.random.default_rng(12345))
    counts = Counter(zip(rows.tolist(), t.tolist(), i.tolist()))
    assert set(counts) <= set(want), "sampled a pair of probability 0"
    keys = sorted(want)
    if len(keys) == 1:
        assert counts[keys[0]] == n
        return
    observed = np.array([counts[k] for k in keys], dtype=float)
    expected = np.array([want[k] for k in keys]) * n
    assert chisquare(observed, expected).pvalue > 0.01


def test_infinite_exponents_pick_argmax_argmin_with_tie_splitting():
    rows, t, i = GenPASSampler(TOY, INF, INF, -INF).sample(4000, np.random.default_rng(0))
    assert set(rows.tolist()) == {3, 4}  # the two longest users, both used
    assert abs((rows == 3).mean() - 0.5) < 0.05
    assert np.all(t == 5) and np.all(i == 1)
    rows, t, i = GenPASSampler(TOY, -INF, -INF, INF).sample(100, np.random.default_rng(0))
    assert np.all(rows == 1) and np.all(t == 2) and np.all(i == 1)


def test_sampling_is_deterministic_in_seed_and_epoch():
    spec = sampler_spec_from_config({**GENPAS_DEFAULTS, "train_sampler": "SW"})
    a = draw_epoch_pairs(TOY, spec, 3, 50, epoch_rng(2024, 0))
    b = draw_epoch_pairs(TOY, spec, 3, 50, epoch_rng(2024, 0))
    c = draw_epoch_pairs(TOY, spec, 3, 50, epoch_rng(2024, 1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_restrict_truncation_draws_only_the_last_L_starts():
    rows, t, i = GenPASSampler(TOY, 1.0, 0.0, 0.0, max_len=2, truncation="restrict").sample(
        3000, np.random.default_rng(1)
    )
    assert np.all(i >= np.maximum(1, t - 2)) and np.all(i < t)
    # under ``cut`` short inputs of long targets are reachable only by cutting
    rows, t, i = GenPASSampler(TOY, 1.0, 0.0, 0.0, max_len=2, truncation="cut").sample(
        3000, np.random.default_rng(1)
    )
    assert np.any(i < t - 2)


# ----------------------------------------------------------------------- enumerate / presets


def test_enumerate_gives_the_classic_pair_sets():
    lengths = TOY.lengths.tolist()
    users = [u for u, n in enumerate(lengths) if n >= 2]
    mt = set(zip(*[a.tolist() for a in enumerate_pairs(TOY, "MT")]))
    assert mt == {(u, t, 1) for u in users for t in range(2, lengths[u] + 1)}
    lt = list(zip(*[a.tolist() for a in enumerate_pairs(TOY, "LT")]))
    assert lt == [(u, lengths[u], 1) for u in users]  # one pair per user: full prefix -> last
    sw = list(zip(*[a.tolist() for a in enumerate_pairs(TOY, "SW")]))
    want = [(u, t, i) for u in users for t in range(2, lengths[u] + 1) for i in range(1, t)]
    assert sorted(sw) == sorted(want) and len(sw) == len(set(sw))
    with pytest.raises(ValueError, match="LT, MT, SW"):
        enumerate_pairs(TOY, "XX")


def test_lt_and_mt_sampling_distributions_equal_their_enumerations():
    for name in ("LT", "MT"):
        rows, t, i, p = GenPASSampler(TOY, *PRESETS[name]).pair_probabilities()
        support = {k for k, q in zip(zip(rows.tolist(), t.tolist(), i.tolist()), p) if q > 0}
        enum = set(zip(*[a.tolist() for a in enumerate_pairs(TOY, name)]))
        assert support == enum
        np.testing.assert_allclose(p[p > 0], 1.0 / len(enum))  # uniform over the classic set


def test_sw_parametric_is_exact_sw_up_to_the_per_user_factor():
    """(2,1,0) is uniform over each user's windows, user mass (n-1)^2 vs n(n-1)/2: factor 2(n-1)/n."""
    rows, t, i, p = GenPASSampler(TOY, *PRESETS["SW"]).pair_probabilities()
    lengths = TOY.lengths
    n_windows = lengths * (lengths - 1) / 2
    exact_share = n_windows / n_windows.sum()
    param_share = np.bincount(rows, weights=p, minlength=lengths.size)
    for u in np.flatnonzero(lengths >= 2):
        pu = p[rows == u]
        np.testing.assert_allclose(pu, pu[0])  # uniform within the user
        assert len(pu) == n_windows[u]
    ok = lengths >= 2
    ratio = param_share[ok] / exact_share[ok]
    factor = 2 * (lengths[ok] - 1) / lengths[ok]
    np.testing.assert_allclose(ratio / ratio[0], factor / factor[0])


@pytest.mark.parametrize("max_len", [None, 1, 2, 3])
@pytest.mark.parametrize("truncation", ["cut", "restrict"])
def test_exact_windows_merge_truncated_pairs(max_len, truncation):
    sampler = GenPASSampler(TOY, 0.5, 1.0, -1.0, max_len=max_len, truncation=truncation)
    rows, t, i, p = sampler.pair_probabilities()
    want = Counter()
    for a, b, c, q in zip(rows.tolist(), t.tolist(), i.tolist(), p):
        start = c if max_len is None else max(c, b - max_len)
        want[(a, b, start)] += q
    wr, wt, ws, wp = sampler.exact_windows()
    got = dict(zip(zip(wr.tolist(), wt.tolist(), ws.tolist()), wp))
    assert len(got) == len(wr) == sampler.n_windows()
    assert set(k for k, q in got.items() if q > 0) == set(k for k, q in want.items() if q > 0)
    for k, q in want.items():
        assert got[k] == pytest.approx(q, abs=1e-15)
    assert wp.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------- targets and KL


@pytest.mark.parametrize("theta", THETAS)
def test_target_distribution_matches_the_definition(theta):
    want = np.zeros(10)
    for (u, t, _), q in brute_force_probs(TOY.lengths.tolist(), *theta).items():
        want[TOY.items[TOY.offsets[u] + t - 1]] += q
    np.testing.assert_allclose(target_distribution(TOY, theta[0], theta[1], 10), want, atol=1e-15)


def test_kl_with_epsilon():
    q = np.array([0.5, 0.5, 0.0])
    assert kl_divergence(q, q) == pytest.approx(0.0, abs=1e-12)
    p = np.array([1.0, 0.0, 0.0])  # p misses an item q has: finite thanks to eps = 1e-10
    eps = 1e-10
    qe, pe = (q + eps) / (1 + 3 * eps), (p + eps) / (1 + 3 * eps)
    assert kl_divergence(q, p) == pytest.approx(float(np.sum(qe * np.log(qe / pe))))
    assert math.isfinite(kl_divergence(q, p))


def test_every_theta_of_a_small_grid_is_a_distribution():
    for a, b, g in itertools.product([-2, 0, 2, INF], [-1, 0, INF], [-INF, 0, 1]):
        rows, t, i, p = GenPASSampler(TOY, a, b, g).pair_probabilities()
        assert p.sum() == pytest.approx(1.0) and np.all(p >= 0)
