"""One plugin trainer (RecBole's, with named hook points) and the hooks models and configs declare."""

from recbole_genrec.trainer.trainer import GenRecTrainer, trainer_class, with_hook_points

__all__ = ["GenRecTrainer", "trainer_class", "with_hook_points"]
