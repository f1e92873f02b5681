"""Trainers that add only what generative models need (``<Model>Trainer`` is picked by utils.get_trainer)."""

from recbole_genrec.trainer.tiger_trainer import TIGERTrainer

__all__ = ["TIGERTrainer"]
from recbole_genrec.trainer.apao_trainer import TIGER_APAOTrainer  # noqa: E402  (APAO diagnostics)
