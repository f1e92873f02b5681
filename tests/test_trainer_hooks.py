"""The plugin trainer's hook points (recbole_genrec.trainer.hooks) and the RecBole-free tokenizer."""

import os
import subprocess
import sys

import torch
from conftest import tiny_config
from recbole.utils import init_seed

from recbole_genrec.config import Config
from recbole_genrec.trainer import GenRecTrainer, trainer_class
from recbole_genrec.trainer.hooks import (
    APAODiagnostics,
    DecodeStats,
    PrefixSurvival,
    StopTraining,
    TimeBudget,
    TrainerHook,
    ValidationBeam,
    WarmupSchedule,
)
from recbole_genrec.trainer.resume import ResumeState
from recbole_genrec.trainer.trainer import hooks_for
from recbole_genrec.utils import create_dataset, data_preparation, get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Recorder(TrainerHook):
    """Counts every hook point; captures the users and scores of every evaluation batch."""

    def __init__(self):
        self.calls, self.users, self.phases = [], [], []

    def fit_start(self, trainer, train_data, valid_data):
        self.calls.append("fit_start")

    def epoch_start(self, trainer, epoch_idx, train_data):
        self.calls.append(f"epoch_start {epoch_idx}")

    def epoch_end(self, trainer, epoch_idx, train_loss, seconds):
        assert seconds > 0 and train_loss > 0
        self.calls.append(f"epoch_end {epoch_idx}")

    def eval_batch(self, trainer, phase, interaction, scores, positive_u, positive_i):
        assert scores.shape == (len(interaction), trainer.model.n_items)
        self.users.append(interaction[trainer.model.USER_ID].clone())
        self.phases.append(phase)

    def eval_end(self, trainer, phase, result):
        result["recorded_batches"] = len(self.users)


def build(tiny_data, tmp_path, model="SASRec", **keys):
    config = Config(model=model, dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, **keys), argv=[])
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train._dataset)
    return config, model, (train, valid, test)


def test_hook_points_run_in_order_and_see_every_evaluation_batch(tiny_data, tmp_path):
    config, model, (train, valid, test) = build(tiny_data, tmp_path, epochs=2)
    trainer = trainer_class(config)(config, model)
    recorder = Recorder()
    trainer.hooks.append(recorder)
    trainer.fit(train, valid, saved=False)
    assert recorder.calls == ["fit_start", "epoch_start 0", "epoch_end 0", "epoch_start 1", "epoch_end 1"]
    assert set(recorder.phases) == {"valid"} and trainer.epochs_run == 2
    recorder.users.clear()
    recorder.phases.clear()
    result = trainer.evaluate(test, load_best_model=False)
    users = torch.cat(recorder.users)
    assert recorder.phases and set(recorder.phases) == {"test"}
    assert len(users) == len(test.dataset.inter_feat) and len(set(users.tolist())) == len(users)
    assert result["recorded_batches"] == len(recorder.users)  # eval_end may add keys to the result


def test_a_hook_can_stop_training(tiny_data, tmp_path):
    config, model, (train, valid, _) = build(tiny_data, tmp_path, epochs=5)

    class StopAfterTwo(TrainerHook):
        def epoch_start(self, trainer, epoch_idx, train_data):
            if epoch_idx == 2:
                raise StopTraining("enough")

    trainer = GenRecTrainer(config, model)
    trainer.hooks.append(StopAfterTwo())
    best, result = trainer.fit(train, valid, saved=False)
    assert trainer.epochs_run == 2 and best == trainer.best_valid_score and result is trainer.best_valid_result


def test_models_and_configs_declare_their_hooks(tiny_data, tmp_path):
    config, model, _ = build(tiny_data, tmp_path)
    assert [type(h) for h in hooks_for(config, model)] == [ResumeState]  # a RecBole model: resume state only
    config, model, _ = build(tiny_data, tmp_path, save_resume_state=False)
    assert hooks_for(config, model) == []  # ... or RecBole's trainer exactly
    config, model, _ = build(tiny_data, tmp_path, train_time_budget=5, save_resume_state=False)
    assert [type(h) for h in hooks_for(config, model)] == [TimeBudget]
    sid = os.path.join(tiny_data, "tiny", "tiny.sid-test.json")
    with open(sid, "w") as f:
        f.write("{" + ",".join(f'"i{i}": ["<a_{i // 9}>", "<b_{i // 3 % 3}>", "<c_{i % 3}>"]' for i in range(30)) + "}")
    small = dict(n_layers=1, d_model=16, d_ff=32, n_heads=2, d_kv=8, beam_size=10, valid_beam_size=10, sid_file=sid)
    config, model, _ = build(tiny_data, tmp_path, model="TIGER", **small)
    assert [type(h) for h in hooks_for(config, model)] == [ValidationBeam, DecodeStats, WarmupSchedule, ResumeState]
    config, model, _ = build(tiny_data, tmp_path, model="TIGER_APAO", **small)
    kinds = [type(h) for h in hooks_for(config, model)]
    assert kinds == [ValidationBeam, DecodeStats, APAODiagnostics, PrefixSurvival, WarmupSchedule, ResumeState]


def test_tokenizer_builds_codes_without_recbole(tmp_path):
    code = f"""
import sys, numpy as np
sys.path.insert(0, {ROOT!r})
import importlib, pkgutil, recbole_genrec.tokenizer as pkg
for m in pkgutil.iter_modules(pkg.__path__):
    if m.name != "__main__":
        importlib.import_module("recbole_genrec.tokenizer." + m.name)
from recbole_genrec.defaults import package_defaults
from recbole_genrec.tokenizer.build import ItemCatalog, build_semantic_ids
texts = [f"office item {{i}} " + " ".join(["pen", "desk", "lamp", "ink"][j % 4] for j in range(i % 7)) for i in range(40)]
settings = dict(package_defaults("sid"), sid_method="rkmeans", rq_levels=2, rq_codebook_size=16)
catalog = ItemCatalog("toy", [str(i) for i in range(40)], np.ones(40, bool), texts=texts)
sids = build_semantic_ids(catalog, settings, {str(tmp_path)!r}, seed=0, show_progress=False)
assert sids.codes[-1].shape == (40, 3) and len({{tuple(r) for r in sids.codes[-1].tolist()}}) == 40
assert not [m for m in sys.modules if m == "recbole" or m.startswith("recbole.")], "RecBole was imported"
print("ok")
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
