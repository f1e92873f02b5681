"""MTGRec: TIGER pre-trained on several semantically relevant tokenizers, then fine-tuned on one.

Reference:
    Bowen Zheng et al. "Pre-training Generative Recommender with Multi-Identifier Item
    Tokenization." SIGIR 2025 (spec: ../shared/specs/mtgrec.md; official code zhengbw0324/MTGRec).

The tokenizers are the codes of the last ``sid_num_tokenizers`` epochs of **one** RQ-VAE run
(``dataset.item_sids``: ``[n_tokenizers, n_items, L]``, oldest first, so index ``n - 1`` is
the latest epoch). One :class:`~recbole_genrec.model.sid_table.SemanticIDTable` per tokenizer
(``self.sids``), all with the same vocabulary layout, so one T5 embedding table serves every
tokenizer. Everything else is TIGER's: the encoder input and labels (``encoder_inputs`` /
``target_labels`` with a table), the T5, beam search, the score adapter.

Stages (``mt_stage``):

- ``pretrain``: the tokenizer of every training sequence is drawn independently from
  ``tok_prob`` (p) with a generator seeded from ``seed`` (the code draws per sample in the
  collate function, spec §4.1); its history and target are both written with that tokenizer.
  p is set by the curriculum hook (:mod:`recbole_genrec.trainer.curriculum`).
- ``finetune``: the pre-trained weights (``mt_pretrained_path``) with a fresh AdamW, one
  tokenizer (``mt_finetune_tokenizer``, default the latest) for training, validation and test:
  plain TIGER on that table, so IDs map one-to-one to items. Without ``mt_pretrained_path`` it
  trains that tokenizer from scratch (the "w/o pre-training" reading of TIGER++).
- ``all`` (default): the whole method in one command (:func:`recbole_genrec.mtgrec_pipeline.run_mtgrec`):
  pre-train, one fine-tune per candidate tokenizer (``mt_finetune_tokenizers``), the choice on
  validation only, the chosen model tested with ``beam_size``.

Choices where the spec is silent or the issue overrides it:

- Validation during pre-training decodes with the latest tokenizer only (the code averages
  NDCG@10 over all tokenizers, but with ``val_delay=199`` it runs once); the pre-trained weights
  handed to the fine-tunes are RecBole's best-validation checkpoint of the pre-training run.
- A stage schedule longer than ``epochs`` is a ConfigError naming ``mt_stage_epochs`` (the code
  silently drops trailing stages; issue 13 asks for the error). ``mt_stage_ratios`` gives the
  stages as fractions of ``epochs`` (each ``max(1, round(r * epochs))``) for presets whose
  schedule scales with the budget.
- ``mt_pretrain_ckpt_epochs`` (the scripts' selection of the pre-training epoch) is not provided.

Defaults: ``properties/model/MTGRec.yaml``; a CPU-sized preset: ``properties/model/MTGRec-cpu.yaml``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_genrec.errors import ConfigError
from recbole_genrec.model.sid_table import tables_from_dataset
from recbole_genrec.model.tiger import TIGER
from recbole_genrec.pipeline import RunsStages
from recbole_genrec.trainer.curriculum import LoadPretrained, MTGRecCurriculum

STAGES = ("all", "pretrain", "finetune")
INFLUENCE_MODES = ("code", "paper")


class StackedCodes(nn.Module):
    """Every tokenizer's item tokens stacked as one table ``[n_tokenizers * n_items, L]``.

    Row ``t * n_items + i`` = item ``i`` under tokenizer ``t`` (row ``t * n_items`` = padding, all
    0), so TIGER's ``encoder_inputs``/``target_labels`` read any per-sequence mix of tokenizers
    when the item ids are shifted by ``t * n_items`` (:meth:`MTGRec.shifted`).
    """

    def __init__(self, tables):
        super().__init__()
        self.n_levels = tables[0].n_levels
        self.register_buffer("item_tokens", torch.cat([t.item_tokens for t in tables]), persistent=False)


def _int_list(value, key):
    if not isinstance(value, (list, tuple)) or not value or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"{key} must be a non-empty list of numbers, got {value!r}.")
    return list(value)


def stage_epochs(config):
    """The pre-training stage lengths in epochs (``mt_stage_ratios`` scaled by ``epochs``, else ``mt_stage_epochs``)."""
    epochs = int(config["epochs"])
    if config["mt_stage_ratios"] is not None:
        ratios = _int_list(config["mt_stage_ratios"], "mt_stage_ratios")
        if any(r <= 0 for r in ratios):
            raise ConfigError(f"mt_stage_ratios must be positive fractions of epochs, got {ratios!r}.")
        stages, key = [max(1, round(r * epochs)) for r in ratios], "mt_stage_ratios"
    else:
        stages, key = [int(s) for s in _int_list(config["mt_stage_epochs"], "mt_stage_epochs")], "mt_stage_epochs"
        if any(s < 1 for s in stages):
            raise ConfigError(f"mt_stage_epochs must be positive epoch counts, got {stages!r}.")
    if sum(stages) > epochs:
        raise ConfigError(
            f"{key} gives stages of {stages} epochs ({sum(stages)} in all), longer than epochs={epochs}. "
            f"Fix: shorten {key} or raise epochs (or give mt_stage_ratios, fractions of epochs)."
        )
    return stages


def finetune_candidates(config, n_tokenizers=None):
    """Tokenizer indices (0 = oldest kept epoch) the ``all`` stage fine-tunes on, oldest first."""
    n = int(n_tokenizers if n_tokenizers is not None else config["sid_num_tokenizers"])
    ids = config["mt_finetune_tokenizer_ids"]
    if ids is not None:
        ids = [int(i) for i in _int_list(ids, "mt_finetune_tokenizer_ids")]
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise ConfigError(
                f"mt_finetune_tokenizer_ids {bad} are not tokenizers: the RQ-VAE kept sid_num_tokenizers={n} "
                f"(indices 0..{n - 1}, {n - 1} = the latest epoch)."
            )
        return sorted(set(ids))
    k = config["mt_finetune_tokenizers"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"mt_finetune_tokenizers must be a positive int (the k latest tokenizers), got {k!r}.")
    if k > n:
        raise ConfigError(
            f"mt_finetune_tokenizers={k} is more tokenizers than the RQ-VAE kept (sid_num_tokenizers={n}). "
            f"Fix: set mt_finetune_tokenizers <= {n} or raise sid_num_tokenizers."
        )
    return list(range(n - k, n))


def check_settings(config, n_tokenizers=None):
    """Every MTGRec setting, checked before any training (ConfigError naming the key)."""
    stage = config["mt_stage"]
    if stage not in STAGES:
        raise ConfigError(f"mt_stage must be one of {'|'.join(STAGES)}, got {stage!r}.")
    tau = config["mt_tau"]
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or math.isnan(tau) or tau <= 0:
        raise ConfigError(f"mt_tau must be a temperature > 0 (.inf = uniform p), got {tau!r}.")
    if config["mt_influence_mode"] not in INFLUENCE_MODES:
        raise ConfigError(f"mt_influence_mode must be code or paper, got {config['mt_influence_mode']!r}.")
    ratio = config["mt_influence_sample_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"mt_influence_sample_ratio must be in (0, 1], got {ratio!r}.")
    n = int(n_tokenizers if n_tokenizers is not None else config["sid_num_tokenizers"])
    if n < 1:
        raise ConfigError(f"sid_num_tokenizers must be >= 1, got {n}.")
    rq_epochs = config["rq_epochs"]
    if config["sid_method"] == "rqvae" and not config["sid_independent_runs"] and rq_epochs is not None and n > rq_epochs:
        raise ConfigError(
            f"sid_num_tokenizers={n} is more tokenizers than the RQ-VAE keeps (rq_epochs={rq_epochs}). "
            f"Fix: set sid_num_tokenizers <= {rq_epochs}."
        )
    if stage in ("all", "pretrain"):
        stage_epochs(config)
    if stage == "all":
        finetune_candidates(config, n)
    if stage == "finetune":
        j = config["mt_finetune_tokenizer"]
        if j is not None and (isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < n):
            raise ConfigError(
                f"mt_finetune_tokenizer must be a tokenizer index in 0..{n - 1} (sid_num_tokenizers={n}), got {j!r}."
            )


class MTGRec(RunsStages, TIGER):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.sids = tables_from_dataset(dataset)
        self.n_tokenizers = len(self.sids)
        check_settings(config, self.n_tokenizers)
        self.mt_stage = config["mt_stage"]
        self.stacked = StackedCodes(list(self.sids))
        # the curriculum's state (checkpointed): p, and the numerator / LR sum of the cumulative influence
        self.register_buffer("tok_prob", torch.full((self.n_tokenizers,), 1.0 / self.n_tokenizers, dtype=torch.float64))
        self.register_buffer("mt_influence_num", torch.zeros(self.n_tokenizers, dtype=torch.float64))
        self.register_buffer("mt_lr_sum", torch.zeros((), dtype=torch.float64))
        self.generator = torch.Generator().manual_seed(int(config["seed"]))
        j = config["mt_finetune_tokenizer"]
        self.finetune_tokenizer = self.n_tokenizers - 1 if j is None else int(j)
        if self.mt_stage == "finetune":
            self.sid = self.sids[self.finetune_tokenizer]  # training, validation and test on one table
        else:
            self.sid = self.sids[-1]  # validation during pre-training: the latest tokenizer

    check_settings = staticmethod(check_settings)
    finetune_candidates = staticmethod(finetune_candidates)

    @classmethod
    def stage_pipeline(cls, config):
        if config["mt_stage"] != "all":
            return None
        from recbole_genrec.mtgrec_pipeline import run_mtgrec

        return run_mtgrec

    def trainer_hooks(self, config):
        hooks = super().trainer_hooks(config)
        if self.mt_stage == "finetune":
            if config["mt_pretrained_path"]:
                hooks.append(LoadPretrained(config["mt_pretrained_path"]))
        else:
            hooks.append(
                MTGRecCurriculum(
                    stage_epochs(config),
                    config["mt_tau"],
                    config["mt_influence_mode"],
                    config["mt_influence_sample_ratio"],
                    config["mt_influence_dropout"],
                )
            )
        return hooks

    # ------------------------------------------------------------------ curriculum state
    def reset_curriculum(self):
        """p uniform, no cumulative influence (the start of pre-training)."""
        self.tok_prob.fill_(1.0 / self.n_tokenizers)
        self.mt_influence_num.zero_()
        self.mt_lr_sum.zero_()

    def set_curriculum(self, num, lr_sum, p):
        self.mt_influence_num.copy_(torch.as_tensor(num, dtype=torch.float64))
        self.mt_lr_sum.fill_(float(lr_sum))
        self.tok_prob.copy_(torch.as_tensor(p, dtype=torch.float64))

    def draw_tokenizers(self, n: int) -> torch.Tensor:
        """``n`` tokenizer indices drawn i.i.d. from p with the model's seeded generator (on CPU)."""
        return torch.multinomial(self.tok_prob.detach().cpu(), n, replacement=True, generator=self.generator)

    # ------------------------------------------------------------------ training
    def shifted(self, items: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
        """Item ids of ``items`` (``[B]`` or ``[B, M]``) as rows of :class:`StackedCodes` for tokenizers ``tok [B]``."""
        shift = tok.to(items.device) * self.n_items
        return items + (shift.unsqueeze(1) if items.dim() == 2 else shift)

    def label_logits_with(self, interaction, tok: torch.Tensor):
        """TIGER's teacher-forced ``(logits, labels)``, each sequence written with tokenizer ``tok[b]``."""
        user = interaction[self.USER_ID] if self.USER_ID in interaction else None
        seq = self.shifted(interaction[self.ITEM_SEQ], tok)
        input_ids, mask = self.encoder_inputs(seq, interaction[self.ITEM_SEQ_LEN], user, self.stacked)
        labels = self.target_labels(self.shifted(interaction[self.POS_ITEM_ID], tok), self.stacked)
        return self.decode_logits(self.encode(input_ids, mask), mask, labels), labels

    def loss_with(self, interaction, tok: torch.Tensor):
        logits, labels = self.label_logits_with(interaction, tok)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))

    def tokenizer_loss(self, interaction, t: int):
        """The loss of ``interaction`` written entirely with tokenizer ``t`` (the influence passes)."""
        n = interaction[self.ITEM_SEQ].shape[0]
        return self.loss_with(interaction, torch.full((n,), int(t), dtype=torch.long))

    def calculate_loss(self, interaction):
        if self.mt_stage == "finetune":
            return super().calculate_loss(interaction)
        return self.loss_with(interaction, self.draw_tokenizers(interaction[self.ITEM_SEQ].shape[0]))
