"""Named hook points of the plugin trainer, and the hooks this package ships.

A hook is an object with any of these methods (the base class makes each a no-op)::

    fit_start(trainer, train_data, valid_data)            before RecBole's fit loop; may raise StopTraining
    fit_end(trainer)                                      after the fit loop ended by itself (epochs, early stop)
    epoch_start(trainer, epoch_idx, train_data)           before each training epoch; may raise StopTraining
    epoch_end(trainer, epoch_idx, train_loss, seconds)    after each training epoch
    evaluation(trainer, phase)                            context manager around one evaluation
                                                          (phase "valid" during fit, else "test")
    eval_batch(trainer, phase, interaction, scores, positive_u, positive_i)
                                                          after each evaluation batch (RecBole's
                                                          eval_func output: scores [B, n_items] for
                                                          full sort)
    eval_end(trainer, phase, result)                      after each evaluation; may add keys to result
    resume_state(trainer) -> dict | None                  what the hook must carry over an interruption
                                                          (saved in the run's resume state)
    load_resume_state(trainer, state)                     that dict, before ``fit`` of a resumed run

Hooks come from two places (``trainer.hooks_for``): a model declares its own by subclassing
:class:`DeclaresHooks` (TIGER: validation beam, decoding statistics; TIGER_APAO adds its
epoch key, loss diagnostics and prefix survival), and config keys declare the rest
(``lr_scheduler``: warm-up schedule, ``train_time_budget``: time budget, ``save_resume_state``/
``resume``: :class:`recbole_genrec.trainer.resume.ResumeState`). A hook that
produces a result a caller reads publishes it as a trainer attribute, named in its docstring.
"""

import contextlib
import time
import warnings

from recbole.utils import set_color

from recbole_genrec.errors import ConfigError


class StopTraining(Exception):
    """Raised by a hook's ``epoch_start`` to end ``fit`` with the best result so far."""


class TrainerHook:
    """Base class: every hook point is a no-op."""

    def fit_start(self, trainer, train_data, valid_data):
        pass

    def fit_end(self, trainer):
        pass

    def epoch_start(self, trainer, epoch_idx, train_data):
        pass

    def epoch_end(self, trainer, epoch_idx, train_loss, seconds):
        pass

    def evaluation(self, trainer, phase):
        return contextlib.nullcontext()

    def eval_batch(self, trainer, phase, interaction, scores, positive_u, positive_i):
        pass

    def eval_end(self, trainer, phase, result):
        pass

    def resume_state(self, trainer):
        return None

    def load_resume_state(self, trainer, state):
        pass


class DeclaresHooks:
    """Mixin for models that bring trainer hooks: override :meth:`trainer_hooks`."""

    def trainer_hooks(self, config):
        return []


# ---------------------------------------------------------------------------- config hooks


class WarmupSchedule(TrainerHook):
    """A ``transformers.get_scheduler`` learning-rate schedule stepped after every optimizer step.

    Over ``epochs * len(train_data)`` steps with ``warmup_steps`` linear warm-up, or, when
    ``warmup_ratio`` is set, that fraction of the run's steps; a resumed run catches the schedule
    up to ``start_epoch``. Publishes ``trainer.scheduler``.
    """

    def __init__(self, name, warmup_steps, warmup_ratio=None):
        if warmup_ratio is not None and not 0 <= warmup_ratio <= 1:
            raise ConfigError(f"warmup_ratio must be a fraction in [0, 1] (or ~ to use warmup_steps), got {warmup_ratio!r}.")
        self.name, self.warmup_steps, self.warmup_ratio = str(name), int(warmup_steps or 0), warmup_ratio
        self._registered = None

    def fit_start(self, trainer, train_data, valid_data):
        from transformers import get_scheduler

        total = max(trainer.epochs * len(train_data), 1)
        warmup = self.warmup_steps if self.warmup_ratio is None else round(self.warmup_ratio * total)
        trainer.scheduler = get_scheduler(
            self.name, trainer.optimizer, num_warmup_steps=min(warmup, total), num_training_steps=total
        )
        if self._registered is not trainer.optimizer:
            trainer.optimizer.register_step_post_hook(lambda *_: trainer.scheduler.step())
            self._registered = trainer.optimizer
        with warnings.catch_warnings():  # a resumed run catches up before its first optimizer step
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            for _ in range(trainer.start_epoch * len(train_data)):
                trainer.scheduler.step()


class TimeBudget(TrainerHook):
    """``train_time_budget`` (minutes): no epoch starts after the budget is spent.

    The check runs at each epoch start, so a run may exceed the budget by at most one epoch
    (and its evaluation); the first epoch always runs. ``fit`` then returns the best
    validation result so far and RecBole reloads the best checkpoint for the test as usual.
    """

    def __init__(self, minutes):
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0:
            raise ConfigError(f"train_time_budget must be a positive number of minutes, got {minutes!r}.")
        self.minutes = minutes
        self.deadline = None

    def fit_start(self, trainer, train_data, valid_data):
        self.deadline = time.perf_counter() + 60.0 * self.minutes

    def epoch_start(self, trainer, epoch_idx, train_data):
        if trainer.epochs_run > 0 and time.perf_counter() > self.deadline:
            raise StopTraining(f"train_time_budget of {self.minutes} min spent after {trainer.epochs_run} epochs")


# ---------------------------------------------------------------------------- model hooks


class ValidationBeam(TrainerHook):
    """Validation during ``fit`` decodes with ``valid_beam_size``; the test keeps ``beam_size``."""

    def evaluation(self, trainer, phase):
        model = trainer.model
        return model.using_beam(model.valid_beam_size) if phase == "valid" else contextlib.nullcontext()


class DecodeStats(TrainerHook):
    """Logs the invalid-ID rate of each evaluation's beams; publishes ``trainer.last_decode_stats``."""

    @contextlib.contextmanager
    def evaluation(self, trainer, phase):
        trainer.model.pop_decode_stats()  # drop counts from outside this evaluation
        yield

    def eval_end(self, trainer, phase, result):
        model = trainer.model
        stats = trainer.last_decode_stats = model.pop_decode_stats()
        trainer.logger.info(
            set_color("decoding", "blue")
            + f" [{model.decoding}, beam {model.eval_beam_size}]: invalid-ID rate "
            f"{stats['invalid_rate']:.4%} of {stats['beams']} beams, "
            f"{stats['topk_invalid_rate']:.4%} in the top {model.max_topk}"
        )


def _fmt(values):
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


class APAODiagnostics(TrainerHook):
    """APAO's training side (spec apao.md §3): the epoch keys the negatives; per-prefix means logged.

    After each epoch the means of ``l_t``, ``w_t`` (and pairwise AUC/MRR) plus the epoch's
    seconds are appended to ``trainer.apao_history`` (one dict per epoch).
    """

    def fit_start(self, trainer, train_data, valid_data):
        trainer.apao_history = []

    def epoch_start(self, trainer, epoch_idx, train_data):
        trainer.model.set_apao_epoch(epoch_idx)
        trainer.model.pop_apao_stats()
        self.steps = max(len(train_data), 1)

    def epoch_end(self, trainer, epoch_idx, train_loss, seconds):
        model = trainer.model
        stats = model.pop_apao_stats()
        stats.update(epoch=epoch_idx, train_seconds=seconds, seconds_per_step=seconds / self.steps)
        trainer.apao_history.append(stats)
        if "loss" in stats:
            line = (
                set_color("apao", "blue") + f" [{model.apao_loss}] epoch {epoch_idx}: CE {stats['ce']:.4f}, "
                f"prefix loss l_t {_fmt(stats['loss'])}, weights w_t {_fmt(stats['weight'])}"
            )
            if "auc" in stats:
                line += f", AUC {_fmt(stats['auc'])}, MRR {_fmt(stats['mrr'])}, kept negatives {_fmt(stats['kept_negatives'])}"
            trainer.logger.info(line)


class PrefixSurvival(TrainerHook):
    """After each evaluation, the prefix-survival rate per step (spec apao.md §8).

    Logged, added to the result as ``prefix_survival@t`` and published as
    ``trainer.last_prefix_survival``.
    """

    @contextlib.contextmanager
    def evaluation(self, trainer, phase):
        trainer.model.pop_prefix_survival()
        yield

    def eval_end(self, trainer, phase, result):
        model = trainer.model
        survival = trainer.last_prefix_survival = model.pop_prefix_survival()
        trainer.logger.info(
            set_color("prefix survival", "blue") + f" [beam {model.eval_beam_size}] t=1..{len(survival)}: {_fmt(survival)}"
        )
        for t, rate in enumerate(survival, start=1):
            result[f"prefix_survival@{t}"] = round(rate, 4)
