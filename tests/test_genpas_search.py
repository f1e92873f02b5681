"""GenPAS search: NED, KL filter, alignment/discrimination, ranking rule, end-to-end CLI."""

import json
import math
import os
import sys

import numpy as np
import pytest
from conftest import tiny_config

from recbole_genrec.analysis.genpas_search import (
    MT,
    WindowSimilarity,
    alignment_discrimination,
    kl_filter,
    kl_table,
    ned,
    parse_grid,
    rank_candidates,
    run_search,
)
from recbole_genrec.data.genpas import INF, GenPASSampler, Sequences


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest"])


def test_ned_examples():
    assert ned([1, 2, 3, 4], [1, 3, 4]) == 0.25  # paper App. B
    assert ned([1, 2, 3], [4, 5]) == 1.0  # disjoint
    assert ned([7, 8, 9], [7, 8, 9]) == 0.0
    assert ned([], []) == 0.0
    assert ned([1, 2], [2, 1]) == 1.0  # two substitutions over max length 2


def test_ranking_rule_on_a_hand_computed_toy():
    # A (higher better) and D (lower better) for five configurations:
    #   c0: A .9  D .5  -> rank_A 1, rank_D 4 -> score 4
    #   c1: A .8  D .1  -> rank_A 2, rank_D 1 -> score 2   (A/D 8)
    #   c2: A .4  D .2  -> rank_A 4, rank_D 2 -> score 4
    #   c3: A .6  D .3  -> rank_A 3, rank_D 3 -> score 3
    #   c4: A .6  D .3  -> tie with c3 (ranks 3, 3), lower KL wins the tie
    #   c5: A NaN (no query target reachable) -> ranks last on A
    records = [
        {"theta": ("c0",), "A": 0.9, "D": 0.5, "KL": 0.1},
        {"theta": ("c1",), "A": 0.8, "D": 0.1, "KL": 0.9},
        {"theta": ("c2",), "A": 0.4, "D": 0.2, "KL": 0.2},
        {"theta": ("c3",), "A": 0.6, "D": 0.3, "KL": 0.5},
        {"theta": ("c4",), "A": 0.6, "D": 0.3, "KL": 0.4},
        {"theta": ("c5",), "A": float("nan"), "D": 0.05, "KL": 0.0},
    ]
    ranked = rank_candidates(records)
    by = {r["theta"][0]: r for r in ranked}
    assert [(by[c]["rank_A"], by[c]["rank_D"], by[c]["score"]) for c in ("c0", "c1", "c2", "c3", "c4", "c5")] == [
        (1, 6, 6), (2, 2, 2), (5, 3, 5), (3, 4, 4), (3, 4, 4), (6, 1, 6),
    ]
    # order: c1 (2), then c3/c4 tie at 4 with equal A/D -> lower KL first (c4), then c2 (5),
    # then c0/c5 at 6: c0 has A/D 1.8, c5 NaN -> c0 first
    assert [r["theta"][0] for r in ranked] == ["c1", "c4", "c3", "c2", "c0", "c5"]
    assert by["c1"]["A/D"] == pytest.approx(8.0)


SEQS = Sequences.from_lists([[1, 2, 3, 4], [2, 3, 5], [1, 5], [4, 2, 3, 1, 5], [3]])
N_ITEMS = 6


def test_kl_filter_keeps_configs_not_worse_than_mt_and_mt_itself():
    q = np.array([0, 0.1, 0.2, 0.3, 0.2, 0.2])
    alphas, betas, gammas = [0.0, 1.0], [0.0, INF], [-INF, 0.0]
    table = kl_table(SEQS, q, N_ITEMS, alphas, betas)
    mt = table[(1.0, 0.0)]["valid"]
    cands = kl_filter(table, alphas, betas, gammas)
    want = [(a, b, g) for a in alphas for b in betas for g in gammas if table[(a, b)]["valid"] <= mt]
    assert cands == want and MT in cands
    # a grid without MT and everything worse than MT: only MT survives, or nothing
    bad = {(0.0, INF): {"valid": mt + 1}, MT[:2]: {"valid": mt}}
    assert kl_filter(bad, [0.0], [INF], [0.0]) == [MT]
    with pytest.raises(ValueError, match="no configuration is left after the KL filter"):
        kl_filter(bad, [0.0], [INF], [0.0], include_mt=False)
    # lowest-KL fraction
    assert len(kl_filter(table, alphas, betas, gammas, keep=0.25, include_mt=False)) == len(gammas)
    with pytest.raises(ValueError, match="genpas_kl_keep"):
        kl_filter(table, alphas, betas, gammas, keep="most")


def test_grid_parsing_and_errors():
    grid = parse_grid({"alpha": [1, "2"], "beta": ["inf", 0], "gamma": ["-inf"]})
    assert grid == {"alpha": [1.0, 2.0], "beta": [INF, 0.0], "gamma": [-INF]}
    with pytest.raises(ValueError, match="genpas_grid_beta"):
        parse_grid({"beta": []})
    with pytest.raises(ValueError, match="genpas_grid_alpha"):
        parse_grid({"alpha": ["x"]})


def brute_force_ad(theta, queries, max_len):
    """A and D by the definition, over every (u, t, i) pair with its exact probability."""
    rows, t, i, p = GenPASSampler(SEQS, *theta).pair_probabilities()
    a_vals, d_vals = [], []
    for xv, yv in queries:
        num_s = den_s = num_d = den_d = 0.0
        for r, tt, ii, q in zip(rows, t, i, p):
            x, y = SEQS.window(r, tt, ii, max_len)
            sim = 1 - ned(x, xv)
            if y == yv:
                num_s, den_s = num_s + q * sim, den_s + q
            else:
                num_d, den_d = num_d + q * sim, den_d + q
        if den_s > 0:
            a_vals.append(num_s / den_s)
        d_vals.append(num_d / den_d)
    return (np.mean(a_vals) if a_vals else float("nan")), np.mean(d_vals), len(a_vals) / len(queries)


@pytest.mark.parametrize("max_len", [2, 3])
def test_alignment_discrimination_matches_the_definition(max_len):
    queries = [([1, 2, 3], 4), ([2, 3], 5), ([5, 4], 2), ([2, 1], 9)]  # 9 is never a target
    lists = np.zeros((4, 3), dtype=np.int64)
    for k, (x, _) in enumerate(queries):
        lists[k, : len(x)] = x
    qs = (lists, np.array([len(x) for x, _ in queries]), np.array([y for _, y in queries]))
    thetas = [MT, (0.0, INF, -INF), (2.0, 1.0, 0.0), (-1.0, 2.0, 1.0)]
    got, n_used = alignment_discrimination(SEQS, thetas, qs, 10, max_len, seed=0, workers=1)
    assert n_used == 4
    for theta in thetas:
        a, d, cov = brute_force_ad(theta, queries, max_len)
        assert got[theta][0] == pytest.approx(a, rel=1e-9)
        assert got[theta][1] == pytest.approx(d, rel=1e-9)
        assert got[theta][2] == pytest.approx(cov)
    # sampled mode (window set above genpas_ad_max_pairs) approximates the exact values
    approx, _ = alignment_discrimination(SEQS, [MT], qs, 10, max_len, seed=0, max_pairs=1, sample_pairs=50000, workers=1)
    # a comparison budget subsamples the queries (seeded), and says how many it used
    few, n_few = alignment_discrimination(SEQS, thetas, qs, 10, max_len, seed=0, workers=1, max_compared=3)
    again, _ = alignment_discrimination(SEQS, thetas, qs, 10, max_len, seed=0, workers=1, max_compared=3)
    assert 1 <= n_few < 4 and repr(few) == repr(again)  # deterministic (repr: NaN-safe)
    assert approx[MT][0] == pytest.approx(got[MT][0], abs=0.02)
    assert approx[MT][1] == pytest.approx(got[MT][1], abs=0.02)


def test_run_search_is_deterministic_and_returns_only_kl_survivors():
    rng = np.random.default_rng(0)
    seqs = Sequences.from_lists([list(rng.integers(1, 12, size=rng.integers(2, 9))) for _ in range(60)])
    valid = (rng.integers(1, 12, size=(60, 5)), rng.integers(1, 6, size=60), rng.integers(1, 12, size=60))
    kw = dict(n_queries=30, seed=3, workers=1, top_k=3)
    r1 = run_search(seqs, valid, 12, 5, **kw)
    r2 = run_search(seqs, valid, 12, 5, **kw)
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k != "timings"}, default=float)
    assert strip(r1) == strip(r2)
    kl = {(r["alpha"], r["beta"]): r["valid"] for r in r1["kl"]}
    mt = kl[("1", "0")]
    for c in r1["candidates"]:
        assert kl[(c["theta"][0], c["theta"][1])] <= mt * (1 + 1e-12)
    assert len(r1["top_k"]) == 3 and r1["top_k"][0]["config"].startswith("--train_sampler=genpas")
    assert len(r1["kl"]) == 25


def test_cli_on_the_tiny_dataset_writes_json_and_heatmap(tiny_data, tmp_path, monkeypatch, capsys):
    import yaml

    from recbole_genrec.analysis import genpas_search

    cfg = tiny_config(tiny_data, tmp_path)
    cfg["genpas_search_out"] = str(tmp_path / "out")
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    argv = ["genpas_search", "--dataset=tiny", f"--config_files={cfg_file}", "--genpas_top_k=2"]
    monkeypatch.setattr(sys, "argv", argv)
    result = genpas_search.main(argv[1:])
    out = capsys.readouterr().out
    assert "rank_A" in out and "--train_sampler=genpas" in out
    json_path, png_path = result["outputs"]
    assert os.path.isfile(png_path) and os.path.getsize(png_path) > 1000
    with open(json_path) as f:
        saved = json.load(f)
    assert len(saved["top_k"]) == 2 and saved["dataset"] == "tiny"
    assert math.isfinite(saved["kl_presets"]["MT"]["valid"])


def test_query_chunking_does_not_change_scores():
    rows, t, start, p = GenPASSampler(SEQS, *MT, max_len=3).exact_windows()
    sim = WindowSimilarity(SEQS, rows, t, start, N_ITEMS)
    lists = np.array([[1, 2, 3], [2, 3, 0], [5, 4, 0], [4, 0, 0]])
    args = (lists, np.array([3, 2, 2, 1]), np.array([4, 5, 2, 3]))
    w = np.stack([p, np.full(p.size, 1.0 / p.size)], 1)
    whole = sim.scores(w, *args, workers=1)
    one_by_one = sim.scores(w, *args, workers=1, max_nnz=1)
    np.testing.assert_allclose(np.array(whole, dtype=float), np.array(one_by_one, dtype=float))
    assert sim.n_compared > 0
