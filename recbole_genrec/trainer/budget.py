"""A wall-clock training budget for any RecBole trainer (``train_time_budget``, minutes).

RecBole stops on ``epochs`` or early stopping only. To compare models "at the same CPU
budget", a trainer made by :func:`with_time_budget` starts no new epoch once the budget is
spent and returns the best validation result so far; RecBole then reloads the best
checkpoint for the test evaluation as usual. The check happens at each epoch start, so a
run may exceed the budget by at most one epoch (and its evaluation).
"""

import time
from logging import getLogger


class _BudgetSpent(Exception):
    pass


def with_time_budget(trainer_class, minutes):
    """A subclass of ``trainer_class`` whose ``fit`` stops starting epochs after ``minutes``."""
    if minutes is None:
        return trainer_class
    if not isinstance(minutes, (int, float)) or minutes <= 0:
        from recbole_genrec.errors import ConfigError

        raise ConfigError(f"train_time_budget must be a positive number of minutes, got {minutes!r}.")

    class BudgetTrainer(trainer_class):
        def fit(self, train_data, valid_data=None, *args, **kwargs):
            self._budget_deadline = time.perf_counter() + 60.0 * minutes
            self.epochs_run = 0
            try:
                return super().fit(train_data, valid_data, *args, **kwargs)
            except _BudgetSpent:
                getLogger().info(
                    f"train_time_budget of {minutes} min spent after {self.epochs_run} epochs: "
                    "stopping with the best validation result so far."
                )
                return self.best_valid_score, self.best_valid_result

        def _train_epoch(self, *args, **kwargs):
            if self.epochs_run > 0 and time.perf_counter() > self._budget_deadline:
                raise _BudgetSpent()
            self.epochs_run += 1
            return super()._train_epoch(*args, **kwargs)

    BudgetTrainer.__name__ = BudgetTrainer.__qualname__ = f"{trainer_class.__name__}WithBudget"
    return BudgetTrainer
