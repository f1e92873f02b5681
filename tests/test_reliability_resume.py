"""Defect 5 (issue 15): ``--resume=<checkpoint>|latest`` continues an interrupted run exactly.

An interruption is simulated by failing the training epoch ``CRASH_AT`` (after the run saved
its resume state for the epochs before it); the resumed run must train only the remaining
epochs and end bit-identical to an uninterrupted run with the same seed.
"""

import glob
import os
import warnings

import pytest
import recbole.trainer.trainer as recbole_trainer
import torch
from conftest import tiny_config
from reliability_util import TIGER_SMALL, write_sid_file

from recbole_genrec.errors import ConfigError
from recbole_genrec.quick_start import run_recbole_genrec

EPOCHS, CRASH_AT = 4, 2
_TRAIN_EPOCH = recbole_trainer.Trainer._train_epoch


class _Crash(Exception):
    pass


def _spy(monkeypatch, crash_at=None):
    """Record the epochs trained (and fail epoch ``crash_at``) via RecBole's ``_train_epoch``."""
    seen = []
    original = _TRAIN_EPOCH

    def train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == crash_at:
            raise _Crash()
        seen.append(epoch_idx)
        return original(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(recbole_trainer.Trainer, "_train_epoch", train_epoch)
    return seen


def _config(data, folder, extra):
    return tiny_config(data, folder, epochs=EPOCHS, **extra)


CASES = {
    "SASRec": ("SASRec", {}),
    "SASRec-genpas": ("SASRec", {"train_sampler": "MT"}),
    "TIGER": ("TIGER", dict(TIGER_SMALL, warmup_steps=3, lr_scheduler="cosine")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resumed_run_is_bit_identical_to_an_uninterrupted_run(case, tiny_data, tmp_path, monkeypatch):
    model, extra = CASES[case]
    if model == "TIGER":
        extra = dict(extra, sid_file=write_sid_file(tmp_path / "codes.json"))
    full_seen = _spy(monkeypatch)
    full = run_recbole_genrec(model, "tiny", config_dict=_config(tiny_data, tmp_path / "full", extra))
    assert full_seen == list(range(EPOCHS))

    _spy(monkeypatch, crash_at=CRASH_AT)
    with pytest.raises(_Crash):
        run_recbole_genrec(model, "tiny", config_dict=_config(tiny_data, tmp_path / "cut", extra))
    resumed_seen = _spy(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run_recbole_genrec(
            model, "tiny", config_dict=dict(_config(tiny_data, tmp_path / "cut", extra), resume="latest")
        )
    # the schedule's catch-up to the resumed epoch is deliberate: no warning about step order
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert resumed_seen == list(range(CRASH_AT, EPOCHS))  # only the epochs the crash lost
    assert resumed["best_valid_score"] == full["best_valid_score"]
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert resumed["test_result"] == full["test_result"]
    # the whole run's history: every epoch and validation, the ones before the interruption included
    assert resumed["epochs_run"] == full["epochs_run"] == EPOCHS
    curve = [(c["epoch"], c["valid_score"]) for c in resumed["valid_curve"]]
    assert curve == [(c["epoch"], c["valid_score"]) for c in full["valid_curve"]] and len(curve) == EPOCHS
    seconds = [c["train_seconds"] for c in resumed["valid_curve"]]
    assert seconds == sorted(seconds) and resumed["train_seconds"] >= resumed["valid_curve"][-1]["wall_seconds"] > 0


def test_resume_from_an_explicit_checkpoint_path(tiny_data, tmp_path, monkeypatch):
    _spy(monkeypatch, crash_at=CRASH_AT)
    config = _config(tiny_data, tmp_path, {})
    with pytest.raises(_Crash):
        run_recbole_genrec("SASRec", "tiny", config_dict=config)
    best = [p for p in glob.glob(os.path.join(config["checkpoint_dir"], "SASRec-*.pth")) if not p.endswith(".resume.pth")]
    assert len(best) == 1
    seen = _spy(monkeypatch)
    result = run_recbole_genrec("SASRec", "tiny", config_dict=dict(config, resume=best[0]))
    assert seen == list(range(CRASH_AT, EPOCHS))
    assert "ndcg@10" in result["test_result"]


def test_resume_latest_without_a_checkpoint_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="resume"):
        run_recbole_genrec("SASRec", "tiny", config_dict=dict(tiny_config(tiny_data, tmp_path), resume="latest"))


def test_resume_from_a_missing_file_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="no_such.pth"):
        run_recbole_genrec(
            "SASRec", "tiny", config_dict=dict(tiny_config(tiny_data, tmp_path), resume=str(tmp_path / "no_such.pth"))
        )


def test_resume_of_another_model_is_refused(tiny_data, tmp_path, monkeypatch):
    _spy(monkeypatch, crash_at=CRASH_AT)
    config = _config(tiny_data, tmp_path, {})
    with pytest.raises(_Crash):
        run_recbole_genrec("SASRec", "tiny", config_dict=config)
    state = glob.glob(os.path.join(config["checkpoint_dir"], "SASRec-*.resume.pth"))
    assert len(state) == 1 and "state_dict" in torch.load(state[0], weights_only=True)
    with pytest.raises(ConfigError, match="SASRec"):
        run_recbole_genrec("GRU4Rec", "tiny", config_dict=dict(config, resume=state[0]))


def test_trainers_without_epochs_are_left_alone(tiny_data, tmp_path):
    from recbole.model.general_recommender.pop import Pop

    from recbole_genrec.config import Config
    from recbole_genrec.trainer.resume import ResumeState
    from recbole_genrec.trainer.trainer import hooks_for

    config = Config(model="Pop", dataset="tiny", config_dict=tiny_config(tiny_data, tmp_path, resume="latest"), argv=[])
    model = Pop.__new__(Pop)  # only its class matters here
    assert not any(isinstance(h, ResumeState) for h in hooks_for(config, model, epoch_based=False))
    assert any(isinstance(h, ResumeState) for h in hooks_for(config, model, epoch_based=True))
