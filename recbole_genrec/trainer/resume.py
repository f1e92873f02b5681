"""Resume an interrupted training run from the command line: ``--resume=<checkpoint>|latest``.

RecBole saves only the *best* model (``<run>.pth``, when validation improves), and
``Trainer.resume_checkpoint`` restarts from that epoch with fresh random state and data order.
The :class:`ResumeState` trainer hook also keeps a *resume state*, ``<run>.resume.pth``
next to the best checkpoint, rewritten atomically at the start of every epoch (i.e. after the
previous epoch's training, validation and best-checkpoint save). It holds what the next epoch
depends on: model and optimizer state, the next epoch, early-stopping counter, best score and
result, the random generators (python, numpy, torch CPU/CUDA, the training loader's
shuffle generator, the model's own ``torch.Generator`` attributes such as MTGRec's tokenizer
draws), what each trainer hook carries over (``TrainerHook.resume_state``, e.g. MTGRec's
curriculum history), the name of the run's best checkpoint and the run's history so far (its
validation curve, training and wall seconds: a resumed run reports the whole run's). Learning-rate schedules follow
from the epoch (the ``WarmupSchedule`` hook fast-forwards from ``start_epoch``) and loaders drawn per epoch (GenPAS, length buckets) from ``(seed, epoch)``.

``--resume=latest`` takes the newest ``<model>-*.resume.pth`` in ``checkpoint_dir``;
``--resume=PATH`` takes a resume state or a best checkpoint (its ``.resume.pth`` sibling if
there is one, else RecBole's lossy resume from the best epoch, with a warning). The resumed
run continues the same run: it writes the same best checkpoint and resume state, so a
single-process run resumed this way ends bit-identical to an uninterrupted run with the same
seed (``benchmarks/results/reliability.md``). A run that finished keeps no resume state
(:func:`discard_resume_state`). Files are loaded with torch's safe loader (``weights_only``).
"""

import glob
import os
import random
import time
from collections import OrderedDict
from logging import getLogger

import numpy as np
import torch

from recbole_genrec.data.dataloader import EpochDrawnLoader
from recbole_genrec.errors import ConfigError
from recbole_genrec.safe_io import atomic_torch_save
from recbole_genrec.trainer.hooks import StopTraining, TrainerHook

RESUME_SUFFIX = ".resume.pth"
STATE_FORMAT = 1


def resume_state_path(best_model_file):
    """``<run>.resume.pth`` for the best checkpoint ``<run>.pth``."""
    stem = best_model_file[:-4] if best_model_file.endswith(".pth") else best_model_file
    return stem + RESUME_SUFFIX


def model_generators(model):
    """``{attribute: torch.Generator}`` of ``model``'s own generators (e.g. MTGRec's tokenizer draws)."""
    return {name: value for name, value in vars(model).items() if isinstance(value, torch.Generator)}


def _rng_state(train_data, model):
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "model": {name: g.get_state() for name, g in model_generators(model).items()},
    }
    generator = getattr(train_data, "generator", None)
    if isinstance(generator, torch.Generator):
        state["train_loader"] = generator.get_state()
    return state


def _set_rng_state(state, train_data, model):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(train_data, "generator", None)
    if "train_loader" in state and isinstance(generator, torch.Generator):
        generator.set_state(state["train_loader"])
    generators = model_generators(model)
    for name, value in state.get("model", {}).items():  # (states written before it kept none)
        generators[name].set_state(value)


def _plain_result(result):
    return None if result is None else OrderedDict((k, float(v)) for k, v in result.items())


def _is_writer(config):
    return config["single_spec"] or config["local_rank"] == 0


class ResumeState(TrainerHook):
    """Keeps ``<run>.resume.pth`` up to date and, after :func:`resume_from_config`, continues from one.

    Declared by ``save_resume_state`` (or ``resume``) for RecBole's epoch-based trainers (a
    decision-tree trainer trains in one step: nothing to resume). The state is written at the start of every
    epoch after the first of this ``fit`` (the previous epoch is trained, validated and saved) and
    once more, marked finished, when ``fit`` ends.
    """

    def __init__(self, save):
        self.save = bool(save)
        self.pending_rng = None  # set by resume_from_config: applied before the first resumed epoch
        self.pending_history = None  # set by resume_from_config: the run's curve and seconds before
        self.finished = False
        self.train_data = None

    def fit_start(self, trainer, train_data, valid_data):
        self.train_data = train_data
        self.saving = self.save and _is_writer(trainer.config)
        if self.pending_history is not None:  # fit has just reset them: prepend what came before
            history, self.pending_history = self.pending_history, None
            trainer.valid_curve[:0] = history["valid_curve"]
            trainer._train_seconds += history["train_seconds"]
            trainer._fit_start -= history["wall_seconds"]
        if self.finished:
            raise StopTraining("Resumed run had finished training: testing its best checkpoint")

    def epoch_start(self, trainer, epoch_idx, train_data):
        if epoch_idx > trainer.start_epoch:  # epoch_idx - 1 is trained, validated and saved
            self._save(trainer, epoch_idx)
        elif self.pending_rng is not None:
            _set_rng_state(self.pending_rng, train_data, trainer.model)
            self.pending_rng = None

    def fit_end(self, trainer):
        self._save(trainer, trainer.epochs, finished=True)

    def _save(self, trainer, next_epoch, finished=False):
        if not self.saving:
            return
        config = trainer.config
        state = {
            "format": STATE_FORMAT,
            "model": config["model"],
            "dataset": config["dataset"],
            "seed": config["seed"],
            "epochs": trainer.epochs,
            "next_epoch": int(next_epoch),
            "finished": bool(finished),
            "cur_step": int(trainer.cur_step),
            "best_valid_score": float(trainer.best_valid_score),
            "best_valid_result": _plain_result(trainer.best_valid_result),
            "best_model_file": os.path.basename(trainer.saved_model_file),
            "state_dict": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "rng": _rng_state(self.train_data, trainer.model),
            "hooks": {type(hook).__name__: hook.resume_state(trainer) for hook in trainer.hooks},
            "history": {
                "valid_curve": list(trainer.valid_curve),
                "train_seconds": float(trainer._train_seconds),
                "wall_seconds": time.perf_counter() - trainer._fit_start,
            },
        }
        atomic_torch_save(state, resume_state_path(trainer.saved_model_file))


def latest_resume_state(folder, model):
    """The newest ``<model>-*.resume.pth`` in ``folder`` (an interrupted run's), or None."""
    candidates = glob.glob(os.path.join(glob.escape(folder), f"{glob.escape(model)}-*{RESUME_SUFFIX}"))
    return max(candidates, key=os.path.getmtime) if candidates else None


def find_resume_file(config):
    """The file ``--resume`` names: a path, or ``latest`` (newest resume state of this model)."""
    value = str(config["resume"])
    folder = config["checkpoint_dir"]
    if value == "latest":
        latest = latest_resume_state(folder, config["model"])
        if latest is None:
            raise ConfigError(
                f"--resume=latest: no interrupted {config['model']} run in checkpoint_dir '{folder}' "
                f"(no {config['model']}-*{RESUME_SUFFIX}; finished runs keep only their best checkpoint). "
                "Fix: pass --resume=<checkpoint path>, the same --checkpoint_dir as the interrupted run, or drop --resume."
            )
        return latest
    if not os.path.isfile(value):
        raise ConfigError(
            f"--resume: checkpoint '{value}' does not exist. Fix: pass a .pth file from checkpoint_dir "
            f"('{folder}') or --resume=latest."
        )
    sibling = resume_state_path(value)
    return sibling if not value.endswith(RESUME_SUFFIX) and os.path.isfile(sibling) else value


def load_resume_file(path, device):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # unreadable, truncated or holding objects the safe loader refuses
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--resume: cannot load '{path}' safely ({first}). Fix: pass another checkpoint.") from err


def resume_from_config(config, trainer, train_data):
    """Apply ``--resume`` (if set) to a freshly built ``trainer``; returns the file used or None."""
    if not config["resume"]:
        return None
    if trainer.hook(ResumeState) is None:
        raise ConfigError(
            f"--resume: {type(trainer).__name__} trains in one step (no epochs), so there is nothing to resume. "
            "Fix: drop --resume."
        )
    path = find_resume_file(config)
    logger = getLogger()
    state = load_resume_file(path, config["device"])
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(f"--resume: '{path}' is not a checkpoint of this package (no state_dict).")
    if "next_epoch" not in state:  # a best checkpoint without its resume state: RecBole's resume
        if state["config"]["model"] != config["model"]:
            raise ConfigError(f"--resume: '{path}' is a {state['config']['model']} checkpoint, not {config['model']}.")
        trainer.resume_checkpoint(path)
        logger.warning(
            f"--resume: '{path}' has no {RESUME_SUFFIX} beside it: resuming from its epoch with fresh random "
            "state and data order (not bit-identical to an uninterrupted run)."
        )
        if isinstance(train_data, EpochDrawnLoader):  # drawn per (seed, epoch): replay the next one
            train_data.set_epoch(trainer.start_epoch)
        return path
    for key in ("model", "dataset"):
        if state[key] != config[key]:
            raise ConfigError(
                f"--resume: '{path}' is a {state['model']} run on {state['dataset']}, this is "
                f"{config['model']} on {config['dataset']}. Fix: resume with the same --model and --dataset."
            )
    if state["seed"] != config["seed"] or state["epochs"] != config["epochs"]:
        logger.warning(
            f"--resume: '{path}' was started with seed {state['seed']} and {state['epochs']} epochs, this run "
            f"has {config['seed']} and {config['epochs']}: it continues, but is not the run it resumes."
        )
    trainer.model.load_state_dict(state["state_dict"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.start_epoch = state["next_epoch"]
    trainer.cur_step = state["cur_step"]
    trainer.best_valid_score = state["best_valid_score"]
    trainer.best_valid_result = state["best_valid_result"]
    trainer.saved_model_file = os.path.join(os.path.dirname(path), state["best_model_file"])
    hook = trainer.hook(ResumeState)
    hook.pending_rng, hook.finished = state["rng"], state["finished"]
    hook.pending_history = state.get("history")  # (states written before it kept no history)
    for other in trainer.hooks:
        carried = state.get("hooks", {}).get(type(other).__name__)
        if carried is not None:
            other.load_resume_state(trainer, carried)
    if isinstance(train_data, EpochDrawnLoader):  # drawn per (seed, epoch): replay the next one
        train_data.set_epoch(trainer.start_epoch)
    logger.info(f"Resumed from '{path}': training continues at epoch {trainer.start_epoch}.")
    return path


def discard_resume_state(trainer):
    """Remove a finished run's resume state (its best checkpoint stays)."""
    path = resume_state_path(trainer.saved_model_file)
    if _is_writer(trainer.config) and os.path.isfile(path):
        os.remove(path)
