"""The two-model ensemble of spec memgen.md §4: fusion, alpha = 1 / 0, validation-only selection, compare rows."""

import json
import os

import numpy as np
import pytest
from conftest import tiny_config

from recbole_genrec.analysis.ensemble import (
    Fuser,
    adaptive_alpha,
    list_metrics,
    minmax,
    run_ensemble,
    select,
)
from recbole_genrec.analysis.predictions import load_predictions, write_predictions

ALPHAS = [round(0.1 * i, 1) for i in range(11)]
KS = [1, 5, 9, 13, 17, 21, 25]
TAUS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def random_lists(seed, M=150, N=20, n_items=60):
    rng = np.random.default_rng(seed)
    ia = np.stack([rng.choice(np.arange(1, n_items), N, replace=False) for _ in range(M)])
    ib = np.stack([rng.choice(np.arange(1, n_items), N, replace=False) for _ in range(M)])
    sa = -np.sort(-rng.normal(size=(M, N)), 1)
    sb = -np.sort(-rng.normal(size=(M, N)), 1)
    ib[:, 7] = -1  # an invalid beam
    target = np.where(rng.random(M) < 0.5, ia[np.arange(M), rng.integers(0, N, M)], ib[np.arange(M), rng.integers(0, N, M)])
    return ia, sa, ib, sb, np.where(target < 0, 1, target), rng.random(M) * 0.6


def brute_fuse(ia, sa, ib, sb, alpha, k):
    out = []
    for m in range(len(ia)):
        a, b = minmax(sa[m : m + 1])[0], minmax(sb[m : m + 1])[0]
        score_b = {x: s for x, s in zip(ib[m], b) if x >= 0}
        cands = [(x, alpha * s + (1 - alpha) * score_b.get(x, 0.0)) for x, s in zip(ia[m], a)]
        cands += [(x, (1 - alpha) * s) for x, s in zip(ib[m], b) if x < 0 or x not in set(ia[m])]
        order = sorted(range(len(cands)), key=lambda i: -cands[i][1])  # stable: A first, then B-only
        out.append([cands[i][0] for i in order[:k]])
    return np.array(out)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_fusion_equals_a_plain_implementation(alpha):
    ia, sa, ib, sb, target, _ = random_lists(0)
    assert np.array_equal(Fuser(ia, sa, ib, sb, target).ranked(alpha, 10), brute_fuse(ia, sa, ib, sb, alpha, 10))


def test_alpha_one_and_zero_reproduce_the_single_models_top10():
    ia, sa, ib, sb, target, _ = random_lists(1)
    fuser = Fuser(ia, sa, ib, sb, target)
    assert np.array_equal(fuser.ranked(1.0, 10), ia[:, :10])
    assert np.array_equal(fuser.ranked(0.0, ia.shape[1] - 1), ib[:, :-1])  # B's top N-1 (spec §4)
    assert fuser.metrics(1.0, (10,)) == list_metrics(ia, target, (10,))
    assert fuser.metrics(0.0, (10,)) == list_metrics(ib, target, (10,))
    msp_high = np.full(len(target), 1.0)
    assert np.array_equal(fuser.ranked(adaptive_alpha(msp_high, 1e4, 0.5), 10), ia[:, :10])


def test_minmax_and_alpha_example():
    s = minmax(np.array([[3.0, 1.0, 2.0], [5.0, 5.0, 5.0], [0.0, -np.inf, -1.0]]))
    assert np.allclose(s, [[1.0, 0.0, 0.5], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert adaptive_alpha(0.3, 10, 0.2) == pytest.approx(0.731, abs=5e-4)


def split_dict(ia, sa, ib, sb, target, msp):
    return {"items_a": ia, "scores_a": sa, "items_b": ib, "scores_b": sb, "target": target, "msp_a": msp}


def test_selection_first_best_wins_and_fixed_is_at_least_the_best_single_on_valid():
    ia, sa, ib, sb, target, msp = random_lists(2)
    chosen = select(split_dict(ia, sa, ib, sb, target, msp), ALPHAS, KS, TAUS)
    fuser = Fuser(ia, sa, ib, sb, target)
    singles = max(fuser.metrics(1.0)["ndcg@10"], fuser.metrics(0.0)["ndcg@10"])
    assert chosen["fixed"]["valid_ndcg@10"] >= singles
    assert chosen["fixed"]["valid_ndcg@10"] == max(fuser.metrics(a)["ndcg@10"] for a in ALPHAS)
    first = next(a for a in ALPHAS if fuser.metrics(a)["ndcg@10"] == chosen["fixed"]["valid_ndcg@10"])
    assert chosen["fixed"]["alpha"] == first
    # identical lists: every weight ties, the first of the grid wins
    tie = select(split_dict(ia, sa, ia, sa, target, msp), ALPHAS, KS, TAUS)
    assert tie["fixed"]["alpha"] == 0.0 and (tie["adaptive"]["k"], tie["adaptive"]["tau"]) == (1.0, 0.0)


def write_pair(tmp_path, valid, test, tag=""):
    def collected(which):
        out = {}
        for split, arrays in (("valid", valid), ("test", test)):
            ia, sa, ib, sb, target, msp = arrays
            items, scores = (ia, sa) if which == "a" else (ib, sb)
            out[split] = {"user": np.arange(len(target)), "target": target, "items": items, "scores": scores,
                          "msp": msp if which == "a" else np.full(len(target), np.nan)}
        return out

    a = write_predictions(str(tmp_path / f"A{tag}.npz"), collected("a"), "SASRec", "toy", "m", True)
    b = write_predictions(str(tmp_path / f"B{tag}.npz"), collected("b"), "TIGER", "toy", "m", False)
    return load_predictions(a), load_predictions(b)


def test_selection_touches_validation_only(tmp_path):
    valid, test = random_lists(3), random_lists(4)
    a, b = write_pair(tmp_path, valid, test)
    result = run_ensemble(a, b, ALPHAS, KS, TAUS)
    ia, sa, ib, sb, target, msp = test
    rng = np.random.default_rng(9)
    changed = (rng.permutation(ia.ravel()).reshape(ia.shape), -np.sort(-rng.normal(size=sa.shape), 1),
               ib[::-1].copy(), sb * 3.0, target, rng.random(len(target)))
    a2, b2 = write_pair(tmp_path, valid, changed, tag="2")
    result2 = run_ensemble(a2, b2, ALPHAS, KS, TAUS)
    assert result2["chosen"] == result["chosen"]
    assert result2["test"] != result["test"]  # the test numbers do change
    assert set(result["test"]) == {"SASRec", "TIGER", "SASRec+TIGER fixed", "SASRec+TIGER adaptive"}


# ---------------------------------------------------------------- real models: quick start and compare
@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    """SASRec (CE) and a small TIGER on the tiny data, predictions saved by run_recbole_genrec."""
    from conftest import write_tiny_dataset

    from recbole_genrec.quick_start import run_recbole_genrec

    root = tmp_path_factory.mktemp("pair")
    data = write_tiny_dataset(root / "data")
    sid = os.path.join(data, "tiny", "tiny.sid-test.json")
    with open(sid, "w") as f:
        json.dump({f"i{i}": [f"<a_{i // 9}>", f"<b_{i // 3 % 3}>", f"<c_{i % 3}>"] for i in range(30)}, f)
    small = {"n_layers": 1, "d_model": 32, "d_ff": 64, "n_heads": 2, "d_kv": 16, "beam_size": 20,
             "valid_beam_size": 10, "warmup_steps": 2, "sid_file": sid}
    pred = str(root / "pred")
    out_a = run_recbole_genrec("SASRec", "tiny", config_dict=tiny_config(data, root, save_predictions=pred, predictions_top_n=20))
    out_b = run_recbole_genrec("TIGER", "tiny", config_dict=tiny_config(data, root, save_predictions=pred, **small))
    return root, data, sid, small, (out_a, out_b), (os.path.join(pred, "SASRec.npz"), os.path.join(pred, "TIGER.npz"))


def test_saved_predictions_reproduce_recbole_test_metrics(trained_pair):
    _, _, _, _, outs, paths = trained_pair
    for out, path in zip(outs, paths):
        p = load_predictions(path)
        test = p.split("test")
        mine = list_metrics(test["items"], test["target"], (5, 10))
        for key in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
            assert mine[key] == pytest.approx(out["test_result"][key], abs=1e-4), (p.model, key)
    a, b = load_predictions(paths[0]), load_predictions(paths[1])
    assert a.scores_all_items and np.all((a.split("test")["msp"] > 0) & (a.split("test")["msp"] <= 1))
    assert not b.scores_all_items and b.item_sid.shape[1] == 3
    result = run_ensemble(a, b, [1.0], KS, TAUS, topk=(10,))
    assert result["test"]["SASRec+TIGER fixed"]["ndcg@10"] == pytest.approx(outs[0]["test_result"]["ndcg@10"], abs=1e-4)


def test_predictions_from_a_best_checkpoint_equal_those_saved_by_the_run(trained_pair, tmp_path):
    """``python -m recbole_genrec.analysis.predictions CKPT --out F``: a model trained earlier gives the
    file --save_predictions wrote at the end of its run (ID model and generative model)."""
    import glob

    from recbole_genrec.analysis.predictions import PredictionsError, main

    root, _, _, _, _, paths = trained_pair
    for model, path in zip(("SASRec", "TIGER"), paths):
        (checkpoint,) = [f for f in glob.glob(str(root / "saved" / f"{model}-*.pth")) if not f.endswith(".resume.pth")]
        out = str(tmp_path / f"{model}.npz")
        main([checkpoint, "--out", out])
        again, saved = load_predictions(out), load_predictions(path)
        assert again.meta == saved.meta and set(again.arrays) == set(saved.arrays)
        for name, array in saved.arrays.items():
            np.testing.assert_array_equal(again.arrays[name], array, err_msg=f"{model} {name}")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PredictionsError, match="broken.pth"):
        from recbole_genrec.analysis.predictions import predictions_from_checkpoint

        predictions_from_checkpoint(str(tmp_path / "broken.pth"), str(tmp_path / "x.npz"))


def test_memgen_analysis_end_to_end(trained_pair):
    from recbole_genrec.analysis.memgen import analyse
    from recbole_genrec.config import Config

    root, data, _, _, _, paths = trained_pair
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config(data, root))
    out = str(root / "report")
    summary = analyse(config, list(paths), out)
    for name in ("report.md", "categories.csv", "categories.png", "hops.png", "shares.png", "tokens.csv",
                 "tokens.png", "msp_bins.csv", "msp.png", "ensemble.csv", "alpha.png", "summary.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    shares = summary["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert set(summary["tokens"]) >= {"rows", "codes_from"} and summary["tokens"]["codes_from"] == "TIGER"
    assert len(summary["msp_bins"]["rows"]) == 5
    again = analyse(config, list(paths), out)
    assert again["label_cache"]["hit"] and json.dumps(again["categories"]) == json.dumps(summary["categories"])


def test_compare_adds_ensemble_rows(trained_pair, tmp_path):
    from recbole_genrec.compare import compare

    root, data, sid, small, _, _ = trained_pair
    cfg = tmp_path / "tiny.yaml"
    keys = tiny_config(data, root, **small)
    cfg.write_text(json.dumps(keys))
    out = tmp_path / "cmp"
    results = compare(["--models", "SASRec,TIGER", "--dataset", "tiny", "--config_files", str(cfg), "--out", str(out),
                       f"--save_predictions={tmp_path / 'pred'}"])
    assert {"SASRec+TIGER fixed", "SASRec+TIGER adaptive"} <= set(results)
    table = (out / "results.md").read_text()
    assert "| SASRec+TIGER fixed |" in table and "| SASRec+TIGER adaptive |" in table
    chosen = results["SASRec+TIGER fixed"]["ensemble"]["chosen"]["alpha"]
    assert chosen in ALPHAS
