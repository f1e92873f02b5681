"""Trainer for generative (beam-search) models: what RecBole's ``Trainer`` lacks for TIGER.

Adds, and nothing else:

* a learning-rate schedule with warm-up (``lr_scheduler``, ``warmup_steps``; any
  ``transformers.get_scheduler`` name), stepped after every optimizer step over
  ``epochs * len(train_data)`` steps;
* validation with the model's ``valid_beam_size`` (test keeps ``beam_size``), spec §6;
* the invalid-ID rate of unconstrained decoding, logged after every evaluation and kept
  in ``self.last_decode_stats``.

Evaluation every ``eval_step`` epochs, early stopping (``stopping_step``), checkpoints and
progress bars (``show_progress``) are RecBole's own (checkpoints saved via ``compat``).
"""

from recbole.trainer import Trainer
from recbole.utils import set_color
from transformers import get_scheduler


class TIGERTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.lr_scheduler_name = config["lr_scheduler"] or "constant"
        self.warmup_steps = int(config["warmup_steps"] or 0)
        self.scheduler = None
        self.last_decode_stats = None
        self.optimizer.register_step_post_hook(self._after_optimizer_step)

    def _after_optimizer_step(self, *args):
        if self.scheduler is not None:
            self.scheduler.step()

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        total = max(self.epochs * len(train_data), 1)
        self.scheduler = get_scheduler(
            self.lr_scheduler_name,
            self.optimizer,
            num_warmup_steps=min(self.warmup_steps, total),
            num_training_steps=total,
        )
        for _ in range(self.start_epoch * len(train_data)):  # resumed run: catch the schedule up
            self.scheduler.step()
        return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)

    def _valid_epoch(self, valid_data, show_progress=False):
        beam = getattr(self.model, "valid_beam_size", None)
        if beam is None:
            return super()._valid_epoch(valid_data, show_progress=show_progress)
        with self.model.using_beam(beam):
            return super()._valid_epoch(valid_data, show_progress=show_progress)

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if hasattr(self.model, "pop_decode_stats"):
            self.model.pop_decode_stats()  # drop counts from outside this evaluation
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if result is not None and hasattr(self.model, "pop_decode_stats"):
            stats = self.last_decode_stats = self.model.pop_decode_stats()
            self.logger.info(
                set_color("decoding", "blue")
                + f" [{self.model.decoding}, beam {self.model.eval_beam_size}]: invalid-ID rate "
                f"{stats['invalid_rate']:.4%} of {stats['beams']} beams, "
                f"{stats['topk_invalid_rate']:.4%} in the top {self.model.max_topk}"
            )
        return result
