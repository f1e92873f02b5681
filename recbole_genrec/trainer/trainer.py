"""The plugin trainer: RecBole's trainer with the hook points of :mod:`recbole_genrec.trainer.hooks`.

:func:`trainer_class` returns, for any model, RecBole's own trainer class for it (``Trainer``
for plugin and sequential models, ``KGTrainer``, ``NCLTrainer``, ... as RecBole picks) with
:class:`HookPoints` in front. With no hooks it behaves exactly as RecBole's trainer; every
hook a model or its config declares (:func:`hooks.hooks_for`) runs at the named points.
``trainer.epochs_run`` counts the epochs this ``fit`` trained, ``trainer.epochs_trained()`` those of
the whole run (a resumed run's included); ``trainer.valid_curve`` lists the run's validations,
``{"epoch", "train_seconds", "wall_seconds", "valid_score"}`` each (training seconds summed over the
epochs so far, wall seconds since the run started), for learning curves; ``trainer.fit_seconds`` is
the run's wall time in ``fit`` (a resumed run's before the interruption included, see
:class:`~recbole_genrec.trainer.resume.ResumeState`).
"""

import contextlib
import functools
import time

import recbole.utils
from recbole.trainer import Trainer

from recbole_genrec import compat
from recbole_genrec.trainer.resume import ResumeState
from recbole_genrec.safe_io import unique_checkpoint_path
from recbole_genrec.trainer.hooks import DeclaresHooks, StopTraining, TimeBudget, WarmupSchedule


def hooks_for(config, model, epoch_based=True):
    """The hooks of one training run: the model's own, then those its config declares.

    ``epoch_based``: the trainer trains in epochs (RecBole's ``Trainer`` family; not the
    one-step decision-tree trainers), so a resume state applies.
    """
    hooks = list(model.trainer_hooks(config)) if isinstance(model, DeclaresHooks) else []
    if config["lr_scheduler"] is not None:
        hooks.append(WarmupSchedule(config["lr_scheduler"], config["warmup_steps"], config["warmup_ratio"]))
    if config["train_time_budget"] is not None:
        hooks.append(TimeBudget(config["train_time_budget"]))
    if epoch_based and (config["save_resume_state"] or config["resume"]):
        hooks.append(ResumeState(save=config["save_resume_state"]))
    return hooks


class HookPoints:
    """Mixin in front of a RecBole trainer class: calls ``self.hooks`` at the named points."""

    def __init__(self, config, model):
        compat.apply(type(config))  # safe checkpoint save/load and CPU DDP for RecBole's trainer
        super().__init__(config, model)
        self.saved_model_file = unique_checkpoint_path(config)  # RecBole's name is per second
        self.hooks = hooks_for(config, model, epoch_based=isinstance(self, Trainer))
        self.epochs_run = 0
        self.valid_curve = []
        self._train_seconds = self._fit_start = self.fit_seconds = 0.0
        self._phase = "test"

    def _call(self, point, *args):
        for hook in self.hooks:
            getattr(hook, point)(self, *args)

    def hook(self, kind):
        """The first hook of class ``kind``, or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    def fit(self, train_data, valid_data=None, *args, **kwargs):
        self.epochs_run, self.valid_curve, self._train_seconds = 0, [], 0.0
        self._fit_start = time.perf_counter()
        try:
            self._call("fit_start", train_data, valid_data)
            result = super().fit(train_data, valid_data, *args, **kwargs)
        except StopTraining as stop:
            self.logger.info(f"{stop}: stopping with the best validation result so far.")
            result = self.best_valid_score, self.best_valid_result
        else:
            self._call("fit_end")
        self.fit_seconds = time.perf_counter() - self._fit_start
        return result

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        self._call("epoch_start", epoch_idx, train_data)
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        seconds = time.perf_counter() - start
        self.epochs_run += 1
        self._train_seconds += seconds
        self._call("epoch_end", epoch_idx, loss, seconds)
        return loss

    def epochs_trained(self):
        """Epochs trained so far, a resumed run's included (the one-step decision-tree trainers
        keep no ``start_epoch``: they train once per ``fit``)."""
        return self.start_epoch + self.epochs_run if isinstance(self, Trainer) else self.epochs_run

    def _valid_epoch(self, valid_data, *args, **kwargs):
        self._phase = "valid"
        try:
            valid_score, valid_result = super()._valid_epoch(valid_data, *args, **kwargs)
        finally:
            self._phase = "test"
        self.valid_curve.append({
            "epoch": self.epochs_trained(),
            "train_seconds": round(self._train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - self._fit_start, 3),
            "valid_score": float(valid_score),
        })
        return valid_score, valid_result

    def evaluate(self, eval_data, *args, **kwargs):
        phase = self._phase
        with contextlib.ExitStack() as stack:
            for hook in self.hooks:
                stack.enter_context(hook.evaluation(self, phase))
            result = super().evaluate(eval_data, *args, **kwargs)
            if result is not None:
                self._call("eval_end", phase, result)
        return result

    def _full_sort_batch_eval(self, batched_data):
        out = super()._full_sort_batch_eval(batched_data)
        self._call("eval_batch", self._phase, *out)
        return out

    def _neg_sample_batch_eval(self, batched_data):
        out = super()._neg_sample_batch_eval(batched_data)
        self._call("eval_batch", self._phase, *out)
        return out


@functools.lru_cache(maxsize=None)
def with_hook_points(base):
    """``base`` (a RecBole trainer class) with :class:`HookPoints` in front (one class per base)."""
    return type(base.__name__, (HookPoints, base), {"__module__": __name__, "__doc__": base.__doc__})


def trainer_class(config):
    """The trainer class for ``config["model"]``: RecBole's choice for it, with hook points."""
    return with_hook_points(recbole.utils.get_trainer(config["MODEL_TYPE"], config["model"]))


# The trainer of every plugin model (RecBole picks its ``Trainer`` for them).
GenRecTrainer = with_hook_points(Trainer)
