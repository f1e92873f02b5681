"""Trainer for ``TIGER_APAO``: ``TIGERTrainer`` plus APAO's diagnostics (spec apao.md §3, §8).

Adds, and nothing else:

* at every epoch start, tells the model the epoch (the key of that epoch's negatives);
* after every training epoch, logs the epoch means of the per-prefix losses ``l_t``, the
  adaptive weights ``w_t`` and (pairwise) the positive's AUC/MRR among the kept negatives,
  and appends them to ``self.apao_history`` (one dict per epoch, also holding the epoch's
  mean seconds per training step);
* after every evaluation, logs the prefix-survival rate (the fraction of users whose
  target's length-``t`` prefix is still in the beam after step ``t``), keeps it in
  ``self.last_prefix_survival`` and adds it to the returned result as
  ``prefix_survival@t`` (so the comparison command's tables carry it).

With ``apao_loss: none`` training and metrics are TIGER's (the hooks only read).
"""

import time

from recbole.utils import set_color

from recbole_genrec.trainer.tiger_trainer import TIGERTrainer


def _fmt(values):
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


class TIGER_APAOTrainer(TIGERTrainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        self.apao_history = []
        self.last_prefix_survival = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        model = self.model
        if hasattr(model, "set_apao_epoch"):
            model.set_apao_epoch(epoch_idx)
            model.pop_apao_stats()
        start = time.perf_counter()
        result = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        seconds = time.perf_counter() - start
        if hasattr(model, "pop_apao_stats"):
            stats = model.pop_apao_stats()
            stats.update(epoch=epoch_idx, train_seconds=seconds, seconds_per_step=seconds / max(len(train_data), 1))
            self.apao_history.append(stats)
            if "loss" in stats:
                line = (
                    set_color("apao", "blue") + f" [{model.apao_loss}] epoch {epoch_idx}: CE {stats['ce']:.4f}, "
                    f"prefix loss l_t {_fmt(stats['loss'])}, weights w_t {_fmt(stats['weight'])}"
                )
                if "auc" in stats:
                    line += f", AUC {_fmt(stats['auc'])}, MRR {_fmt(stats['mrr'])}, kept negatives {_fmt(stats['kept_negatives'])}"
                self.logger.info(line)
        return result

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        model = self.model
        if hasattr(model, "pop_prefix_survival"):
            model.pop_prefix_survival()
        result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if result is not None and hasattr(model, "pop_prefix_survival"):
            survival = self.last_prefix_survival = model.pop_prefix_survival()
            self.logger.info(
                set_color("prefix survival", "blue")
                + f" [beam {model.eval_beam_size}] t=1..{len(survival)}: {_fmt(survival)}"
            )
            for t, rate in enumerate(survival, start=1):
                result[f"prefix_survival@{t}"] = round(rate, 4)
        return result
