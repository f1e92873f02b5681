"""MTGRec (spec mtgrec.md "What a faithful implementation must show" 1-3 and 6, issue 13 done-when 1).

Tiny data (40 users, 30 items) and a 1-layer T5 so the whole file stays in the default suite.
"""

import json
import math
import os

import pytest
import recbole.trainer.trainer as recbole_trainer
import torch
import yaml
from conftest import tiny_config
from recbole.data.dataset import SequentialDataset
from recbole.utils import init_seed

from recbole_genrec.config import Config
from recbole_genrec.errors import ConfigError
from recbole_genrec.model.mtgrec import MTGRec, check_settings, finetune_candidates, stage_epochs
from recbole_genrec.quick_start import run_recbole_genrec
from recbole_genrec.trainer import GenRecTrainer
from recbole_genrec.trainer.curriculum import MTGRecCurriculum, stable_softmax, trainable_parameters
from recbole_genrec.trainer.hooks import TrainerHook
from recbole_genrec.utils import data_preparation

MODEL_DIR = os.path.join(os.path.dirname(__file__), "..", "recbole_genrec", "properties", "model")
SMALL = {"n_layers": 1, "d_model": 32, "d_ff": 64, "n_heads": 2, "d_kv": 16, "beam_size": 20, "valid_beam_size": 10}
SIZES = (4, 4, 4)


def random_codes(n_items, seed):
    """Collision-free random codes ``[n_items, 3]`` (row 0 = padding zeros)."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(math.prod(SIZES), generator=g)[: n_items - 1]
    codes, rest = [], pick
    for s in reversed(SIZES):
        codes.append(rest % s)
        rest = rest // s
    return torch.cat([torch.zeros(1, len(SIZES), dtype=torch.long), torch.stack(codes[::-1], 1)])


def neighbour(sid, n_swaps, seed):
    """``sid`` with ``n_swaps`` pairs of items exchanging their IDs (a 'neighbouring checkpoint')."""
    g = torch.Generator().manual_seed(seed)
    out = sid.clone()
    for _ in range(n_swaps):
        a, b = (torch.randperm(sid.shape[0] - 1, generator=g)[:2] + 1).tolist()
        out[[a, b]] = out[[b, a]]
    return out


def permuted(sid, seed):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(sid.shape[0] - 1, generator=g) + 1
    return torch.cat([sid[:1], sid[perm]])


def build(tiny_data, tmp_path, tables=None, **overrides):
    """A 1-layer MTGRec on the tiny data with ``tables`` ([T, n_items, 3]; default 3 neighbours)."""
    keys = {**SMALL, "warmup_steps": 2, "learning_rate": 0.01, "epochs": 4, "mt_stage_epochs": [2],
            "sid_num_tokenizers": 3, "mt_finetune_tokenizers": 2, "mt_stage": "pretrain"}  # fmt: skip
    keys.update(overrides)
    config = Config(model="MTGRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys))
    init_seed(config["seed"], config["reproducibility"])
    dataset = SequentialDataset(config)
    if tables is None:
        base = random_codes(dataset.item_num, 0)
        tables = torch.stack([neighbour(base, 2, 1), neighbour(base, 1, 2), base])
    dataset.item_sids, dataset.item_sid, dataset.sid_codebook_sizes = tables, tables[-1], list(SIZES)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    return config, MTGRec(config, train._dataset), (train, valid, test)


class RecordP(TrainerHook):
    def __init__(self):
        self.p = []

    def epoch_start(self, trainer, epoch_idx, train_data):
        self.p.append(trainer.model.tok_prob.clone())


# ---------------------------------------------------------------------------- sampling


def test_tokenizer_draws_follow_p(tiny_data, tmp_path):
    base = random_codes(31, 0)
    tables = torch.stack([neighbour(base, k, k) for k in range(4)])
    _, model, _ = build(tiny_data, tmp_path, tables, sid_num_tokenizers=4)
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    model.set_curriculum(torch.zeros(4), 1.0, p)
    n = 100_000
    counts = torch.bincount(model.draw_tokenizers(n), minlength=4).double()
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001
    # seeded: a new model draws the same sequence
    _, again, _ = build(tiny_data, tmp_path, tables, sid_num_tokenizers=4)
    again.set_curriculum(torch.zeros(4), 1.0, p)
    model.generator.manual_seed(2024)
    assert torch.equal(model.draw_tokenizers(50), again.draw_tokenizers(50))


def test_history_and_target_use_the_drawn_tokenizer(tiny_data, tmp_path):
    _, model, (train, _, _) = build(tiny_data, tmp_path)
    batch = next(iter(train))
    tok = torch.arange(batch[model.ITEM_SEQ].shape[0]) % 3
    _, labels = model.label_logits_with(batch, tok)
    items = batch[model.POS_ITEM_ID]
    for b in range(len(items)):
        table = model.sids[int(tok[b])]
        assert labels[b, :3].tolist() == table.item_tokens[items[b]].tolist()
        ids, _ = model.encoder_inputs(batch[model.ITEM_SEQ][b : b + 1], batch[model.ITEM_SEQ_LEN][b : b + 1], None, table)
        mixed, _ = model.encoder_inputs(
            model.shifted(batch[model.ITEM_SEQ][b : b + 1], tok[b : b + 1]), batch[model.ITEM_SEQ_LEN][b : b + 1], None, model.stacked
        )
        assert torch.equal(ids, mixed)
    assert model.vocab_size == 1 + sum(SIZES) + 1 + 1  # one shared vocabulary


# ---------------------------------------------------------------------------- curriculum


def test_p_uniform_in_warmup_and_constant_between_updates(tiny_data, tmp_path):
    config, model, (train, valid, _) = build(tiny_data, tmp_path, epochs=5, mt_stage_epochs=[2, 2], eval_step=10)
    trainer = GenRecTrainer(config, model)
    record = RecordP()
    trainer.hooks.append(record)
    trainer.fit(train, valid, saved=False, show_progress=False)
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    p = record.p
    assert torch.equal(p[0], uniform) and torch.equal(p[1], uniform)  # epochs 1-2: exactly uniform
    assert torch.equal(p[2], p[3]) and not torch.equal(p[2], uniform)  # updated after epoch 2, then constant
    assert not torch.equal(p[4], p[3])  # updated after epoch 4
    history = trainer.mtgrec_history
    assert [h["epoch"] for h in history] == [2, 4]
    assert torch.allclose(torch.tensor(history[0]["p"], dtype=torch.float64), p[2])
    assert all(h["seconds"] > 0 and len(h["influence"]) == 3 for h in history)


def test_temperature_limits_and_stable_softmax():
    scores = torch.tensor([0.3, -1.2, 2.5, 2.4], dtype=torch.float64)
    assert torch.equal(stable_softmax(scores, math.inf), torch.full((4,), 0.25, dtype=torch.float64))
    assert torch.equal(stable_softmax(scores, 1e-9), torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    big = stable_softmax(torch.tensor([1e4, 1e4 + 1.0]), 1.0)  # a naive exp overflows
    assert torch.isfinite(big).all() and abs(float(big[1]) - 1 / (1 + math.exp(-1))) < 1e-12
    p = stable_softmax(scores, 3.0)
    assert abs(float(p.sum()) - 1) < 1e-12 and torch.argmax(p) == 2


def _hand_influence(model, optimizer, train_batch, valid_batch, mode, lr):
    """Γ, S and I by hand: the loss of each tokenizer through TIGER's single-table path."""
    params = [p for _, p in trainable_parameters(model)]
    state = [optimizer.state[p] for p in params]
    m = torch.cat([s["exp_avg"].reshape(-1) for s in state]).double()
    v = torch.cat([s["exp_avg_sq"].reshape(-1) for s in state]).double()
    t = int(state[0]["step"])

    def grad(batch, j):
        model.sid = model.sids[j]
        loss = super(MTGRec, model).calculate_loss(batch)  # TIGER's loss on table j
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, allow_unused=False)]).double()

    n = model.n_tokenizers
    H = torch.stack([grad(valid_batch, j) for j in range(n)])
    S = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        g = grad(train_batch, i)
        m1, v1 = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        if mode == "paper":
            m1, v1 = m1 / (1 - 0.9**t), v1 / (1 - 0.999**t)
        gamma = m1 / torch.sqrt(v1 + 1e-8)
        for j in range(n):
            S[i, j] = float(gamma @ H[j])
    I = S.mean(1) if mode == "code" else lr * S.mean(1)
    model.sid = model.sids[-1]
    return S, I


@pytest.mark.parametrize("mode", ["code", "paper"])
def test_influence_matches_hand_computation(tiny_data, tmp_path, mode):
    keys = dict(dropout_prob=0.0, mt_influence_dropout=False, mt_influence_mode=mode, mt_tau=0.5,
                train_batch_size=4096, eval_batch_size=4096, epochs=3, mt_stage_epochs=[1, 1])  # fmt: skip
    config, model, (train, valid, _) = build(tiny_data, tmp_path, **keys)
    trainer = GenRecTrainer(config, model)
    hook = next(h for h in trainer.hooks if isinstance(h, MTGRecCurriculum))
    trainer.fit(train, valid, saved=False, show_progress=False)  # 3 epochs, updates after epochs 1 and 2
    assert [h["epoch"] for h in trainer.mtgrec_history] == [1, 2]
    train_batch, valid_batch = next(iter(train)), next(iter(valid))[0]
    assert len(train) == 1 and len(valid) == 1

    prev = trainer.mtgrec_history[-1]
    lrs = [h["lr"] for h in trainer.mtgrec_history]
    num_before = torch.tensor(prev["cumulative"], dtype=torch.float64)
    trainer.optimizer.param_groups[0]["lr"] = 0.003  # one more update at a new LR
    record = hook.update(trainer, 3)
    S, I = _hand_influence(model, trainer.optimizer, train_batch, valid_batch, mode, 0.003)
    assert torch.allclose(torch.tensor(record["S"], dtype=torch.float64), S, rtol=1e-6, atol=1e-9)
    assert torch.allclose(torch.tensor(record["influence"], dtype=torch.float64), I, rtol=1e-6, atol=1e-9)
    if mode == "code":  # LR-weighted average over the three updates
        cum = (num_before * sum(lrs) + 0.003 * I) / (sum(lrs) + 0.003)
    else:  # eta-scaled sum
        cum = num_before + I
    assert torch.allclose(torch.tensor(record["cumulative"], dtype=torch.float64), cum, rtol=1e-6, atol=1e-9)
    z = [float(c) / 0.5 for c in cum]
    hand_p = [math.exp(x - max(z)) / sum(math.exp(y - max(z)) for y in z) for x in z]
    assert max(abs(a - b) for a, b in zip(record["p"], hand_p)) < 1e-6
    assert torch.allclose(model.tok_prob, torch.tensor(hand_p, dtype=torch.float64), atol=1e-6)


# The spec's "a permuted-ID tokenizer gets lower influence than real checkpoints" is measured, not
# tested: on this tiny model its outcome flips with the torch thread count (a strict xfail here was
# flaky), see benchmarks/mtgrec_permuted_influence.py and its results.


# ---------------------------------------------------------------------------- fine-tuning


def test_finetuned_ids_are_one_to_one_and_constrained_decoding_is_valid(tiny_data, tmp_path):
    _, model, (_, valid, _) = build(tiny_data, tmp_path, mt_stage="finetune", mt_finetune_tokenizer=1)
    assert model.sid is model.sids[1]
    tokens = model.item_tokens[1:]
    assert len({tuple(r) for r in tokens.tolist()}) == tokens.shape[0]  # one ID per item
    assert model.trie.lookup(model.sids[1].item_tokens[1:] - model.sid.offsets).tolist() == list(range(1, model.n_items))
    model.eval()
    batch = next(iter(valid))[0]
    result = model.generate(batch, beam_size=20)
    assert result.valid.all() and (result.items > 0).all()
    model.full_sort_predict(batch)
    assert model.pop_decode_stats()["invalid"] == 0


# ---------------------------------------------------------------------------- end to end


class TinyEncoder:
    max_seq_length = 256

    def encode(self, texts, batch_size=32, show_progress_bar=None, convert_to_numpy=True):
        import zlib

        import numpy as np

        out = np.zeros((len(texts), 24), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.split():
                out[row] += np.random.default_rng(zlib.crc32(word.encode())).normal(size=24)
        return out


TOKENIZER = dict(rq_codebook_size=8, rq_hidden_sizes=[32], rq_code_dim=8, rq_epochs=4, rq_batch_size=16,
                 rq_kmeans_iters=10, sid_pca_dim=16, sid_method="rqvae")  # fmt: skip


def test_one_command_pretrain_finetune_select_test_and_checkpoint_reload(tiny_data, tmp_path, monkeypatch):
    from recbole_genrec.mtgrec_pipeline import finetune_config
    from recbole_genrec.tokenizer import text as text_module
    from recbole_genrec.utils import create_dataset

    monkeypatch.setattr(text_module, "load_encoder", lambda path, device: TinyEncoder())
    keys = {**SMALL, **TOKENIZER, "warmup_steps": 2, "epochs": 2, "mt_stage_epochs": [1], "sid_num_tokenizers": 3,
            "mt_finetune_tokenizers": 2, "mt_finetune_epochs": 1, "mt_influence_sample_ratio": 0.5}  # fmt: skip
    config_dict = tiny_config(tiny_data, tmp_path, **keys)
    out = run_recbole_genrec(model="MTGRec", dataset="tiny", config_dict=config_dict, argv=[])
    assert {"best_valid_score", "valid_score_bigger", "best_valid_result", "test_result", "train_seconds",
            "test_seconds", "peak_rss_mb", "num_params", "epochs_run"} <= set(out)  # fmt: skip
    assert set(out["test_result"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    mt = out["mtgrec"]
    assert len(mt["pretrain"]["curriculum"]) == 1 and mt["pretrain"]["epochs_run"] == 2
    fts = mt["finetunes"]
    assert [f["tokenizer"] for f in fts] == [1, 2]
    best = max(fts, key=lambda f: f["best_valid_score"])  # the earliest on a tie
    assert mt["chosen_tokenizer"] == best["tokenizer"] and out["best_valid_score"] == best["best_valid_score"]
    assert out["epochs_run"] == 2 + 2
    # the comparison command's worker stores the result as JSON
    json.dumps({k: (dict(v) if hasattr(v, "items") else v) for k, v in out.items()})

    # the chosen checkpoint reloads into a fresh model and gives the same test metrics
    config = Config(model="MTGRec", dataset="tiny", config_dict=config_dict, argv=[])
    init_seed(config["seed"], config["reproducibility"])
    train, _, test = data_preparation(config, create_dataset(config))
    ft = finetune_config(config, best["tokenizer"], None)
    model = MTGRec(ft, train._dataset)
    trainer = GenRecTrainer(ft, model)
    again = trainer.evaluate(test, load_best_model=True, model_file=best["checkpoint"], show_progress=False)
    assert dict(again) == dict(out["test_result"])


class _Crash(Exception):
    pass


_TRAIN_EPOCH = recbole_trainer.Trainer._train_epoch


def _crash_at(monkeypatch, n):
    """Fail the ``n``-th training epoch of this process (every stage counted); returns the epochs trained
    (stage, fine-tuned tokenizer, epoch, training loss)."""
    seen, original = [], _TRAIN_EPOCH

    def train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if len(seen) == n:
            raise _Crash()
        loss = original(self, train_data, epoch_idx, *args, **kwargs)
        seen.append((self.config["mt_stage"], self.config["mt_finetune_tokenizer"], epoch_idx, float(loss)))
        return loss

    monkeypatch.setattr(recbole_trainer.Trainer, "_train_epoch", train_epoch)
    return seen


def test_one_command_resumes_after_interruptions_in_pretraining_and_finetuning(tiny_data, tmp_path, monkeypatch):
    """``--resume=latest`` on the one command: finished stages are skipped, the interrupted one continues
    from its last epoch (curriculum, p and tokenizer draws included) and the run ends as an uninterrupted one."""
    from recbole_genrec.tokenizer import text as text_module

    monkeypatch.setattr(text_module, "load_encoder", lambda path, device: TinyEncoder())
    keys = {**SMALL, **TOKENIZER, "warmup_steps": 2, "epochs": 3, "mt_stage_epochs": [1, 1], "sid_num_tokenizers": 3,
            "mt_finetune_tokenizers": 2, "mt_finetune_epochs": 2, "mt_influence_sample_ratio": 0.5}  # fmt: skip

    def run(folder, **extra):
        config_dict = tiny_config(tiny_data, tmp_path / folder, **{**keys, **extra})
        config_dict["sid_cache_dir"] = str(tmp_path / "sid_cache")  # one tokenizer run for every process
        return run_recbole_genrec(model="MTGRec", dataset="tiny", config_dict=config_dict, argv=[])

    full_seen = _crash_at(monkeypatch, None)
    full = run("full")
    epochs = [("pretrain", None, e) for e in range(3)] + [("finetune", j, e) for j in (1, 2) for e in range(2)]
    assert [s[:3] for s in full_seen] == epochs
    _crash_at(monkeypatch, 2)
    with pytest.raises(_Crash):  # in pre-training, after two curriculum updates
        run("cut")
    with pytest.raises(ConfigError, match="mt_finetune_tokenizers"):  # another run's settings
        run("cut", resume="latest", mt_finetune_tokenizers=1)
    seen = _crash_at(monkeypatch, 4)
    with pytest.raises(_Crash):  # in the second fine-tune
        run("cut", resume="latest")
    resumed_seen = _crash_at(monkeypatch, None)
    resumed = run("cut", resume="latest")
    # only the epochs the crashes lost, each with the uninterrupted run's training loss (same p, draws, batches)
    assert seen == full_seen[2:6] and resumed_seen == full_seen[6:]
    assert resumed["test_result"] == full["test_result"]
    for key in ("best_valid_score", "best_valid_result", "epochs_run", "num_params"):
        assert resumed[key] == full[key], key
    mt, mt_full = resumed["mtgrec"], full["mtgrec"]
    assert mt["chosen_tokenizer"] == mt_full["chosen_tokenizer"]
    assert [u["p"] for u in mt["pretrain"]["curriculum"]] == [u["p"] for u in mt_full["pretrain"]["curriculum"]]
    assert len(mt["pretrain"]["curriculum"]) == 2
    assert [f["best_valid_result"] for f in mt["finetunes"]] == [f["best_valid_result"] for f in mt_full["finetunes"]]
    left = os.listdir(tmp_path / "cut" / "saved")
    assert not [f for f in left if f.endswith(".resume.pth")]  # finished: nothing left to resume
    with pytest.raises(ConfigError, match="no interrupted MTGRec run"):
        run("cut", resume="latest")


def test_pretrain_and_finetune_as_separate_stages(tiny_data, tmp_path, monkeypatch):
    from recbole_genrec.tokenizer import text as text_module

    monkeypatch.setattr(text_module, "load_encoder", lambda path, device: TinyEncoder())
    keys = {**SMALL, **TOKENIZER, "warmup_steps": 2, "epochs": 1, "mt_stage_epochs": [1], "sid_num_tokenizers": 2}
    pre = run_recbole_genrec(model="MTGRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys),
                             argv=["--mt_stage=pretrain"])  # fmt: skip
    assert "mtgrec" not in pre and pre["epochs_run"] == 1
    ckpt = sorted(os.listdir(os.path.join(tmp_path, "saved")))
    path = os.path.join(tmp_path, "saved", [c for c in ckpt if c.startswith("MTGRec")][0])
    ft = run_recbole_genrec(model="MTGRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys),
                            argv=["--mt_stage=finetune", "--mt_finetune_tokenizer=0", f"--mt_pretrained_path={path}"])  # fmt: skip
    assert set(ft["test_result"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}


def test_independent_runs_give_one_tokenizer_per_seed(tiny_data, tmp_path, monkeypatch):
    from recbole_genrec.data.dataset import SemanticIDDataset
    from recbole_genrec.tokenizer import text as text_module

    monkeypatch.setattr(text_module, "load_encoder", lambda path, device: TinyEncoder())

    def dataset(**extra):
        keys = {**TOKENIZER, **extra}
        return SemanticIDDataset(Config(model="MTGRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys), argv=[]))

    one = dataset(sid_num_tokenizers=3)
    indep = dataset(sid_num_tokenizers=3, sid_independent_runs=True)
    single = dataset(sid_num_tokenizers=1)
    assert indep.item_sids.shape == one.item_sids.shape
    assert torch.equal(indep.item_sids[-1], single.item_sids[0])  # the primary is the run with `seed`
    other = dataset(sid_num_tokenizers=1, seed=2025)
    assert torch.equal(indep.item_sids[-2], other.item_sids[0])
    assert len(indep.sid_quality["id_change_vs_previous"]) == 2


# ---------------------------------------------------------------------------- settings


def config_of(tiny_data, tmp_path, **keys):
    return Config(model="MTGRec", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys), argv=[])


@pytest.mark.parametrize(
    "keys, key",
    [
        ({"epochs": 10, "mt_stage_epochs": [6, 3, 3]}, "mt_stage_epochs"),
        ({"epochs": 10, "mt_stage_ratios": [0.6, 0.6]}, "mt_stage_ratios"),
        ({"sid_num_tokenizers": 3, "mt_finetune_tokenizers": 5, "epochs": 200}, "mt_finetune_tokenizers"),
        ({"sid_num_tokenizers": 3, "mt_finetune_tokenizer_ids": [0, 3], "epochs": 200}, "mt_finetune_tokenizer_ids"),
        ({"sid_num_tokenizers": 60, "rq_epochs": 50, "epochs": 200}, "sid_num_tokenizers"),
        ({"mt_tau": 0.0, "epochs": 200}, "mt_tau"),
        ({"mt_tau": -1.0, "epochs": 200}, "mt_tau"),
        ({"mt_influence_mode": "lesss", "epochs": 200}, "mt_influence_mode"),
        ({"mt_influence_sample_ratio": 0.0, "epochs": 200}, "mt_influence_sample_ratio"),
        ({"mt_stage": "pre", "epochs": 200}, "mt_stage"),
    ],
)
def test_bad_settings_name_the_key(tiny_data, tmp_path, keys, key):
    with pytest.raises(ConfigError, match=key):
        check_settings(config_of(tiny_data, tmp_path, **keys))


def test_bad_setting_stops_the_one_command_before_training(tiny_data, tmp_path):
    config_dict = tiny_config(tiny_data, tmp_path, epochs=3, mt_stage_epochs=[2, 2])
    with pytest.raises(ConfigError, match="mt_stage_epochs"):
        run_recbole_genrec(model="MTGRec", dataset="tiny", config_dict=config_dict, argv=[])


def test_yaml_documents_every_key_and_cpu_preset_scales_with_epochs(tiny_data, tmp_path):
    for name in ("MTGRec.yaml", "MTGRec-cpu.yaml"):
        with open(os.path.join(MODEL_DIR, name)) as f:
            lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        assert all("# (" in ln for ln in lines), [ln for ln in lines if "# (" not in ln]
    config = config_of(tiny_data, tmp_path, epochs=200)
    assert stage_epochs(config) == [60, 20, 20, 20, 20, 20, 20] and config["mt_tau"] == 3.0
    assert finetune_candidates(config) == [20, 21, 22, 23, 24]
    with open(os.path.join(MODEL_DIR, "MTGRec-cpu.yaml")) as f:
        preset = yaml.safe_load(f)
    for epochs in (20, 30, 60):
        stages = stage_epochs(config_of(tiny_data, tmp_path, **dict(preset, epochs=epochs)))
        updates = [e for e in __import__("itertools").accumulate(stages) if e < epochs]
        assert stages[0] >= 2 and len(updates) >= 3, (epochs, stages)


# ---------------------------------------------------------------------------- tokenizer recipe


def test_dead_code_restarts_stop_after_dead_code_restart_until(monkeypatch):
    import numpy as np

    from recbole_genrec.tokenizer import rqvae

    params = dict(hidden_sizes=[32], code_dim=8, levels=2, codebook_size=16, vq_type="ema", beta=0.25, ema_decay=0.99,
                  ema_eps=1e-5, detach_residual=True, dropout=0.0, dead_code_restart=True, dead_code_restart_until=0.5,
                  kmeans_init=True, kmeans_iters=5, epochs=6, batch_size=8, optimizer="adamw", lr=1e-3,
                  weight_decay=0.0)  # fmt: skip
    calls, epoch_of = [], {"now": 0}
    original = rqvae.Quantizer._restart
    monkeypatch.setattr(rqvae.Quantizer, "_restart", lambda self, r, dead: (calls.append(epoch_of["now"]), original(self, r, dead)))
    x = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    codes, _ = rqvae.train_rqvae(x, np.arange(40), params, seed=0, keep_last=3, show_progress=False,
                                 on_epoch_end=lambda e, m, xa: epoch_of.update(now=e + 1))  # fmt: skip
    assert calls and max(calls) < 3  # restarts in epochs 0-2 only (half of 6)


def test_influence_passes_build_only_the_batches_they_use():
    from recbole_genrec.trainer.curriculum import _take

    built = []

    def loader():  # a loader that records every batch it builds
        for i in range(10):
            built.append(i)
            yield (f"interaction {i}", "eval extras") if i % 2 else f"interaction {i}"

    assert list(_take(loader(), 3)) == ["interaction 0", "interaction 1", "interaction 2"]
    assert built == [0, 1, 2]  # the fourth batch is never built
