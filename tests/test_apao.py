"""TIGER_APAO (spec apao.md): loss math, exactness against TIGER, negatives, diagnostics, training."""

import math
import os

import pytest
import torch
import yaml
from conftest import tiny_config

from test_tiger import SMALL
from test_tiger import build as build_tiger

from recbole_genrec.config import Config
from recbole_genrec.model import apao_losses as AL
from recbole_genrec.model.tiger import TIGER
from recbole_genrec.model.tiger_apao import TIGER_APAO
from recbole_genrec.trainer import GenRecTrainer
from recbole_genrec.utils import get_model

MODEL_DIR = os.path.join(os.path.dirname(__file__), "..", "recbole_genrec", "properties", "model")


def build(tiny_data, tmp_path, model_class=TIGER_APAO, **overrides):
    return build_tiger(tiny_data, tmp_path, model_class, **overrides)


def loss_and_grads(model, batch, seed=7):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)  # same dropout draws for both models
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------ registration, yaml


def test_registered_with_yaml_on_top_of_tiger_defaults(tmp_path):
    assert get_model("TIGER_APAO") is TIGER_APAO and issubclass(TIGER_APAO, TIGER)
    with open(os.path.join(MODEL_DIR, "TIGER_APAO.yaml")) as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert all("#" in ln for ln in lines), [ln for ln in lines if "#" not in ln]
    ours = yaml.safe_load(text)
    assert ours == {
        "apao_loss": "pointwise", "apao_beta": 0.1, "apao_prefix_tau": 1.0, "apao_eta": 0.0,
        "apao_neg_k": 100, "apao_neg_scale": True, "ce_tau": 1.0, "apao_wo_ce": False,
    }
    with open(os.path.join(MODEL_DIR, "TIGER.yaml")) as f:
        tiger = yaml.safe_load(f)
    config = Config(model="TIGER_APAO", dataset="tiny", config_dict={"data_path": str(tmp_path)})
    assert all(config[k] == v for k, v in {**tiger, **ours}.items() if k != "train_neg_sample_args")
    assert config["train_neg_sample_args"]["distribution"] == "none"  # TIGER's: no negative sampling


def test_bad_keys_are_clear_errors(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="apao_loss"):
        build(tiny_data, tmp_path, apao_loss="listwise")
    with pytest.raises(ValueError, match="apao_neg_k"):
        build(tiny_data, tmp_path, apao_loss="pairwise", apao_neg_k=0)


# ------------------------------------------------------------------ exactness against TIGER


def test_none_is_tiger_bit_for_bit(tiny_data, tmp_path):
    _, tiger, (train, _, _) = build(tiny_data, tmp_path / "t", TIGER)
    _, apao, _ = build(tiny_data, tmp_path / "a", apao_loss="none")
    assert all(torch.equal(a, b) for a, b in zip(tiger.state_dict().values(), apao.state_dict().values()))
    batch = next(iter(train))
    l1, g1 = loss_and_grads(tiger, batch)  # training mode: dropout on, same seed
    l2, g2 = loss_and_grads(apao, batch)
    assert torch.equal(l1, l2) and g1.keys() == g2.keys()
    assert all(torch.equal(g1[n], g2[n]) for n in g1)


@pytest.mark.parametrize("variant", ["pointwise", "pairwise"])
def test_beta_zero_equals_tiger_loss_and_gradients(tiny_data, tmp_path, variant):
    _, tiger, (train, _, _) = build(tiny_data, tmp_path / "t", TIGER)
    _, apao, _ = build(tiny_data, tmp_path / "a", apao_loss=variant, apao_beta=0.0, apao_neg_k=7)
    batch = next(iter(train))
    l1, g1 = loss_and_grads(tiger, batch)
    l2, g2 = loss_and_grads(apao, batch)  # the positive's pass is TIGER's: same dropout draws
    torch.testing.assert_close(l2, l1, rtol=0, atol=1e-7)
    assert g1.keys() == g2.keys()
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ prefix scores on a toy model


@pytest.mark.parametrize("ce_tau", [1.0, 2.0])
def test_candidate_log_probs_equal_per_candidate_teacher_forcing(tiny_data, tmp_path, ce_tau):
    _, model, (train, _, _) = build(tiny_data, tmp_path, apao_loss="pairwise", apao_neg_k=5, ce_tau=ce_tau)
    model.eval()
    batch = next(iter(train))[torch.arange(6)]
    negatives = model.sample_negatives(6)
    with torch.no_grad():
        _, _, pos_logp, neg_logp = model.candidate_log_probs(batch, negatives)
        for k in range(-1, negatives.shape[1]):
            items = batch[model.POS_ITEM_ID] if k < 0 else negatives[:, k]
            logits, labels = model.label_logits(batch, items)  # TIGER's own teacher-forced pass
            direct = TIGER.label_log_probs(logits / ce_tau, labels)[:, : model.n_levels]
            torch.testing.assert_close(pos_logp if k < 0 else neg_logp[:, k], direct, atol=1e-5, rtol=1e-5)


def test_pairwise_loss_equals_direct_reference_computation(tiny_data, tmp_path):
    """l_t from the model == literal reference formula on per-candidate sums, masks built with Python sets."""
    _, model, (train, _, _) = build(tiny_data, tmp_path, apao_loss="pairwise", apao_neg_k=12, apao_prefix_tau=0.7)
    model.eval()
    batch = next(iter(train))[torch.arange(8)]
    model.set_apao_epoch(3)
    with torch.no_grad():
        _, losses, extras = model.prefix_losses(batch)
    model.set_apao_epoch(3)
    negatives = model.sample_negatives(8)  # the same draw
    sid, L = model.item_tokens, model.n_levels
    n_t = [len({tuple(r[:t]) for r in sid[1:].tolist()}) for t in range(1, L + 1)]
    per_t = [[] for _ in range(L)]
    with torch.no_grad():
        cands = torch.cat([batch[model.POS_ITEM_ID][:, None], negatives], 1)
        scores = torch.stack(
            [TIGER.label_log_probs(*model.label_logits(batch, cands[:, c]))[:, :L].cumsum(1) for c in range(13)], 1
        ) / 0.7  # [B, 1+K, L]
    for b in range(8):
        for t in range(1, L + 1):
            seen, kept = {tuple(sid[cands[b, 0]][:t].tolist())}, []
            for c in range(1, 13):
                p = tuple(sid[cands[b, c]][:t].tolist())
                if p not in seen:
                    seen.add(p)
                    kept.append(c)
            kappa = (n_t[t - 1] - 1) / (1 + len(kept))
            e = scores[b, :, t - 1].double().exp()
            per_t[t - 1].append(-math.log(e[0] / (e[0] + kappa * sum(e[c] for c in kept) + 1e-12)) / t)
    direct = torch.tensor([sum(v) / len(v) for v in per_t])
    torch.testing.assert_close(losses.double(), direct.double(), atol=1e-5, rtol=1e-5)
    assert extras["auc"].shape == (L,) and ((extras["auc"] >= 0) & (extras["auc"] <= 1)).all()


# ------------------------------------------------------------------ masks, kappa, N_t


def test_prefix_ids_counts_and_first_occurrence_mask():
    sid = torch.tensor([[0, 0, 0], [1, 2, 3], [1, 2, 4], [1, 5, 3], [2, 2, 3]])  # row 0 = padding
    pids = AL.prefix_ids(sid)
    assert (pids[0] == -1).all()
    assert AL.prefix_counts(pids).tolist() == [2, 3, 4]  # N_t over real items
    for t in range(3):  # equal ids iff equal prefixes
        for i in range(1, 5):
            for j in range(1, 5):
                assert (pids[i, t] == pids[j, t]) == torch.equal(sid[i, : t + 1], sid[j, : t + 1])
    # positive = item 1; negatives 2, 1 (the positive itself), 3, 2 (repeat), 4
    cand = torch.tensor([[1, 2, 1, 3, 2, 4]])
    keep = AL.first_occurrence_mask(pids[cand].transpose(1, 2))  # [1, L, 1+K]
    assert keep[0, 0].tolist() == [True, False, False, False, False, True]  # t=1: all share code 1 but item 4
    assert keep[0, 1].tolist() == [True, False, False, True, False, True]  # t=2: (1,2) = positive's
    assert keep[0, 2].tolist() == [True, True, False, True, False, True]  # t=3: repeat of item 2 masked
    # column 0 is never masked, even when every candidate is the positive
    assert AL.first_occurrence_mask(torch.full((2, 3, 5), 7))[..., 0].all()
    kappa = AL.kappa(AL.prefix_counts(pids), keep)
    torch.testing.assert_close(kappa, torch.tensor([[(2 - 1) / 2, (3 - 1) / 3, (4 - 1) / 4]]))


def test_kappa_and_mask_vectorised_match_python_sets():
    g = torch.Generator().manual_seed(0)
    pid = torch.randint(0, 6, (20, 3, 15), generator=g)
    keep = AL.first_occurrence_mask(pid)
    for b in range(20):
        for t in range(3):
            seen, expect = set(), []
            for c in pid[b, t].tolist():
                expect.append(c not in seen)
                seen.add(c)
            assert keep[b, t].tolist() == expect
    n = torch.tensor([6, 30, 100])
    m = keep[..., 1:].sum(-1)
    torch.testing.assert_close(AL.kappa(n, keep), (n - 1).float() / (1 + m).float())


# ------------------------------------------------------------------ loss formulas


def test_log_space_pairwise_equals_direct_and_stays_finite():
    g = torch.Generator().manual_seed(1)
    B, K, L = 16, 30, 4
    scores = -torch.rand(B, 1 + K, L, generator=g).mul(3).cumsum(-1)  # log-prob sums: decreasing in t
    keep = AL.first_occurrence_mask(torch.randint(0, 10, (B, L, 1 + K), generator=g))
    n = torch.tensor([10, 50, 80, 100])
    for tau, scale in ((1.0, True), (0.5, True), (2.0, False)):
        ours = AL.pairwise_prefix_losses(scores.double(), keep, n, tau, scale)
        ref = AL.pairwise_loss_direct(scores.double(), keep, n, tau, scale)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    deep = scores * 60 - 100  # scores far below -87: exp underflows in float32
    ref = AL.pairwise_loss_direct(deep, keep, n)
    assert not torch.isfinite(ref).all()  # the literal formula breaks down (exp -> 0, -log 0 = inf)
    ours = AL.pairwise_prefix_losses(deep.requires_grad_(), keep, n)
    assert torch.isfinite(ours).all() and (ours > 0).all()
    ours.sum().backward()
    assert torch.isfinite(deep.grad).all()
    torch.testing.assert_close(ours.double(), AL.pairwise_prefix_losses(deep.detach().double(), keep, n))


def test_pointwise_loss_formula_and_frozen_weights_equal_token_reweighted_ce():
    g = torch.Generator().manual_seed(2)
    logp = torch.log_softmax(torch.randn(9, 4, 11, generator=g), -1)[..., 0]  # [B, L] log-probs
    tau = 0.8
    losses = AL.pointwise_prefix_losses(logp, tau)
    direct = torch.tensor([(-logp[:, :t].sum(1) / (t * tau)).mean() for t in range(1, 5)])
    torch.testing.assert_close(losses, direct)
    w = torch.softmax(torch.randn(4, generator=g), 0)
    tw = AL.token_weights(w, tau)
    torch.testing.assert_close(tw, torch.tensor([sum(w[t] / ((t + 1) * tau) for t in range(j, 4)) for j in range(4)]))
    assert (tw[:-1] >= tw[1:]).all()  # early tokens weigh more
    reweighted_ce = (-(tw * logp).sum(1)).mean()
    loss, _ = AL.apao_objective(torch.tensor(0.0), losses, beta=1.0, weights=w)
    torch.testing.assert_close(loss, reweighted_ce)


def test_adaptive_weights_distribution_toward_worst_prefix_and_no_gradient():
    losses = torch.tensor([0.5, 2.0, 1.0, 1.5], requires_grad=True)
    w0 = AL.adaptive_weights(losses, 0.0)
    assert not w0.requires_grad
    torch.testing.assert_close(w0.sum(), torch.tensor(1.0))
    torch.testing.assert_close(w0, losses.detach() / losses.detach().sum())  # eta = 0: w ∝ l
    top = [AL.adaptive_weights(losses, eta)[1].item() for eta in (0.0, 0.5, 1, 2, 5, 50)]
    assert all(a < b for a, b in zip(top, top[1:])) and top[-1] > 0.999  # mass moves to argmax l
    for eta in (0.5, 5.0, 1e4):
        w = AL.adaptive_weights(losses, eta)
        assert torch.isfinite(w).all() and abs(w.sum().item() - 1) < 1e-6
    # non-finite losses get weight 0 and contribute nothing; all-zero losses -> uniform
    w = AL.adaptive_weights(torch.tensor([1.0, float("nan"), float("inf"), 3.0]))
    torch.testing.assert_close(w, torch.tensor([0.25, 0.0, 0.0, 0.75]))
    torch.testing.assert_close(AL.adaptive_weights(torch.zeros(4)), torch.full((4,), 0.25))
    # gradients flow only through l: d(beta * sum w l)/dl = beta * w
    total, w = AL.apao_objective(torch.tensor(1.0), losses, beta=0.1, eta=2.0)
    total.backward()
    torch.testing.assert_close(losses.grad, 0.1 * w)
    only_prefix, _ = AL.apao_objective(torch.tensor(5.0), losses.detach(), beta=0.1, wo_ce=True)
    torch.testing.assert_close(only_prefix, 0.1 * (w0 * losses.detach()).sum())


# ------------------------------------------------------------------ negatives


def test_negatives_uniform_reproducible_and_redrawn_each_epoch(tiny_data, tmp_path):
    _, model, _ = build(tiny_data, tmp_path, apao_loss="pairwise", apao_neg_k=50)
    model.set_apao_epoch(0)
    a = model.sample_negatives(64)
    model.set_apao_epoch(0)
    assert torch.equal(model.sample_negatives(64), a)  # same (seed, epoch, batch): same draw
    model.set_apao_epoch(1)
    assert not torch.equal(model.sample_negatives(64), a)  # next epoch: new negatives
    assert a.shape == (64, 50) and a.min() >= 1 and a.max() <= model.n_items - 1
    counts = torch.bincount(a.flatten(), minlength=model.n_items)[1:].float()
    assert counts.min() > 0 and counts.std() / counts.mean() < 0.2  # ~ uniform over real items


# ------------------------------------------------------------------ training, evaluation, diagnostics


@pytest.mark.parametrize("variant", ["pointwise", "pairwise"])
def test_one_epoch_trains_and_evaluates_with_diagnostics(tiny_data, tmp_path, variant):
    config, model, (train, valid, test) = build(tiny_data, tmp_path, apao_loss=variant, apao_neg_k=20, epochs=2)
    trainer = GenRecTrainer(config, model)
    trainer.fit(train, valid, saved=True)
    result = trainer.evaluate(test, load_best_model=True)
    assert {"recall@5", "recall@10", "ndcg@5", "ndcg@10"} <= set(result)
    hist = trainer.apao_history
    assert [h["epoch"] for h in hist] == [0, 1] and all(h["batches"] == len(train) for h in hist)
    for h in hist:
        assert len(h["loss"]) == 3 and abs(sum(h["weight"]) - 1) < 1e-5 and h["seconds_per_step"] > 0
        assert ("auc" in h) == (variant == "pairwise")
    survival = trainer.last_prefix_survival
    assert len(survival) == 3 and all(a >= b for a, b in zip(survival, survival[1:]))  # monotone in t
    assert [result[f"prefix_survival@{t}"] for t in (1, 2, 3)] == [round(s, 4) for s in survival]
    assert survival[-1] >= result["recall@10"]  # full-length survival = target anywhere in the beam (20)


def test_prefix_survival_matches_beam_contents(tiny_data, tmp_path):
    _, model, (_, _, test) = build(tiny_data, tmp_path, apao_loss="none")
    model.eval()
    interaction = next(iter(test))[0]
    result, prefixes = model.generate_with_prefixes(interaction, beam_size=10)
    plain = model.generate(interaction, beam_size=10)  # recording does not change the search
    assert torch.equal(result.items, plain.items) and torch.equal(result.scores, plain.scores)
    tokens = result.codes + model.offsets
    assert [p.shape[-1] for p in prefixes] == [1, 2, 3]
    assert torch.equal(prefixes[-1], torch.where(torch.isfinite(result.scores)[..., None], tokens, -1))
    for b in range(tokens.shape[0]):  # every final beam extends a recorded step-2 beam
        recorded = {tuple(r) for r in prefixes[1][b].tolist()}
        assert all(tuple(r[:2]) in recorded for r in tokens[b].tolist())
    targets = interaction[model.POS_ITEM_ID]
    hits = model.prefix_survival_hits(prefixes, targets)
    torch.testing.assert_close(hits[:, -1], (result.items == targets[:, None]).any(1))
    # exhaustive beam (>= #items): every prefix survives
    result, prefixes = model.generate_with_prefixes(interaction, beam_size=40)
    assert model.prefix_survival_hits(prefixes, targets).all()


def test_none_trains_to_tiger_metrics(tiny_data, tmp_path):
    runs = []
    for cls, kw in ((TIGER, {}), (TIGER_APAO, {"apao_loss": "none"})):
        config, model, (train, valid, test) = build(tiny_data, tmp_path / cls.__name__, cls, **kw)
        trainer = GenRecTrainer(config, model)
        trainer.fit(train, valid, saved=False)
        result = trainer.evaluate(test, load_best_model=False)
        runs.append(({k: v for k, v in result.items() if "survival" not in k}, model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1].values(), runs[1][1].values()))


@pytest.mark.slow
def test_comparison_command_runs_tiger_and_tiger_apao(tiny_data, tmp_path):
    """``python -m recbole_genrec.compare --models TIGER,TIGER_APAO --apao_loss=pairwise ...`` (one process each)."""
    import json

    from recbole_genrec.compare import compare

    sid_path = os.path.join(tiny_data, "tiny", "tiny.sid-test.json")
    with open(sid_path, "w") as f:
        json.dump({f"i{i}": [f"<a_{i // 9}>", f"<b_{i // 3 % 3}>", f"<c_{i % 3}>"] for i in range(30)}, f)
    keys = {**SMALL, "beam_size": 20, "valid_beam_size": 10, "warmup_steps": 2, "sid_file": sid_path}
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tiny_data, tmp_path, **keys)))
    out = tmp_path / "cmp"
    results = compare(["--models", "TIGER,TIGER_APAO", "--dataset", "tiny", "--config_files", str(cfg),
                       "--epochs", "1", "--out", str(out), "--apao_loss=pairwise", "--apao_neg_k=10"])
    assert set(results) == {"TIGER", "TIGER_APAO"} and all("test_result" in r for r in results.values())
    assert "prefix_survival@1" in results["TIGER_APAO"]["test_result"]
    assert (out / "results.md").is_file()


@pytest.mark.slow
def test_office_reference_codes_prefix_counts():
    """Spec §2/§8: with the APAO code's Office rq-kmeans IDs, N_t = 256/1376/1780/2415 (t = 1..4)."""
    import json

    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "office", "office.sid-rqkmeans.json")
    if not os.path.isfile(path):
        pytest.fail(f"{path} missing (../shared/data/office)")
    with open(path) as f:
        table = json.load(f)
    codes = torch.tensor([[int(tok.split("_")[1][:-1]) for tok in v] for v in table.values()])
    sid = torch.cat([torch.zeros(1, 4, dtype=torch.long), codes])
    assert AL.prefix_counts(AL.prefix_ids(sid)).tolist() == [256, 1376, 1780, 2415]
