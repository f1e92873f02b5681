"""TIGER: generative retrieval over semantic IDs with a T5 encoder-decoder.

Reference:
    Shashank Rajput et al. "Recommender Systems with Generative Retrieval." NeurIPS 2023.

Implementation follows the public code of the MTGRec authors (Zheng et al.), which produced the
TIGER rows of their paper.

Vocabulary (MTGRec code layout; ``S = sid_codebook_sizes``, ``L = len(S)``)::

    0                          pad (also the decoder start token)
    1 + sum(S[:d]) + c         level-d code c              (levels in order)
    1 + sum(S) + u             user token u, u < n_user_tokens (u = user_id mod n_user_tokens)
    1 + sum(S) + n_user_tokens EOS                          vocab_size = EOS + 1

The codes come from a :class:`~recbole_genrec.model.sid_table.SemanticIDTable` (``self.sid``:
offsets, item tokens, prefix trie, prefix ids), built from ``dataset.item_sid``; the methods
that read codes take an optional ``table`` so a model over several tokenizers reuses them.

Encoder input = ``[user] + codes(history, oldest -> newest) + [EOS]``, right-padded with 0
**to the longest history of the batch** (not to MAX_ITEM_LIST_LENGTH: CPU time). Labels =
``codes(target) + [EOS]``. Loss = token cross-entropy averaged over the L+1 labels.

Scoring. ``predict`` and the beam both use the joint log-probability of the item's L code
tokens, each a log-softmax over the full vocabulary (EOS not included: decoding stops after
L tokens, as in the MTGRec code). So ``predict(u, i)`` equals the beam score of item ``i``.

Ranking. ``full_sort_predict`` runs beam search (``decoding: constrained`` by default: prefix
trie, only valid distinct items) and returns ``[B, n_items]`` scores: the valid beam of rank
``r`` (0-based, counting valid beams only) gets ``n_valid - r`` (>= 1), every other item ``i``
gets ``-1 - i / n_items`` (in (-2, -1], strictly ordered by item id so no two scores tie even
when fewer than ``topk`` valid beams exist), the padding item ``-3``. RecBole's top-k is
therefore exactly the beam order. ``decoding: unconstrained`` reproduces the papers
(full-vocabulary beams); invalid beams get no item (the "ignore invalid" reading) and are
counted in ``decode_stats``.

Beam sizes: ``beam_size`` at test, ``valid_beam_size`` during training-time validation
(the ``ValidationBeam`` trainer hook switches). Both must be >= max(topk).

Design choices where the papers are silent: the decoder start token is 0 (= pad, as in T5);
item codes are data (from the dataset), so they are not in the state_dict; APAO-style
subclasses reuse :meth:`label_logits` / :meth:`label_log_probs` rather than the T5 internals.
Defaults: ``properties/model/TIGER.yaml``; a CPU-sized architecture:
``properties/model/TIGER-cpu.yaml``.
"""

import contextlib
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_genrec.errors import ConfigError
from recbole_genrec.model.beam_search import BeamResult, PrefixTrie, beam_search
from recbole_genrec.model.sid_table import SemanticIDTable
from recbole_genrec.model.t5 import T5, T5Dims, T5StepDecoder
from recbole_genrec.trainer.hooks import DecodeStats, DeclaresHooks, ValidationBeam


class TIGER(DeclaresHooks, SequentialRecommender):
    input_type = InputType.POINTWISE
    needs_semantic_ids = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        item_sid = getattr(dataset, "item_sid", None)
        sizes = getattr(dataset, "sid_codebook_sizes", None)
        if item_sid is None or sizes is None:
            raise ValueError(
                "TIGER needs a dataset with semantic IDs (item_sid, sid_codebook_sizes): "
                "build it with recbole_genrec.utils.create_dataset (SemanticIDDataset)."
            )
        item_sid = torch.as_tensor(item_sid, dtype=torch.long)
        if item_sid.dim() != 2 or item_sid.shape[0] != self.n_items or item_sid.shape[1] != len(sizes):
            raise ValueError(
                f"dataset.item_sid must be [n_items={self.n_items}, L={len(sizes)}], got {tuple(item_sid.shape)}"
            )
        self.n_levels = len(sizes)
        self.n_user_tokens = int(config["n_user_tokens"])
        if self.n_user_tokens < 0:
            raise ConfigError(f"n_user_tokens must be >= 0, got {self.n_user_tokens}")
        self.decoding = str(config["decoding"]).lower()
        if self.decoding not in ("constrained", "unconstrained"):
            raise ConfigError(f"decoding must be 'constrained' or 'unconstrained', got {config['decoding']!r}")
        self.beam_size = int(config["beam_size"])
        self.valid_beam_size = int(config["valid_beam_size"] or self.beam_size)
        topk = config["topk"]
        self.max_topk = max(topk) if isinstance(topk, (list, tuple)) else int(topk or 0)
        for key, beam in (("beam_size", self.beam_size), ("valid_beam_size", self.valid_beam_size)):
            self._check_beam(beam, key)
        self.eval_beam_size = self.beam_size

        # token layout (spec §3): the code table, then user tokens, then EOS
        self.sid = SemanticIDTable(item_sid, sizes)
        self.user_token_start = 1 + self.sid.n_tokens
        self.eos_token = self.user_token_start + self.n_user_tokens
        self.vocab_size = self.eos_token + 1

        n_dec = config["n_decoder_layers"]
        self.t5 = T5(
            T5Dims(
                vocab_size=self.vocab_size,
                d_model=config["d_model"],
                d_kv=config["d_kv"],
                d_ff=config["d_ff"],
                num_layers=config["n_layers"],
                num_decoder_layers=n_dec if n_dec is not None else config["n_layers"],
                num_heads=config["n_heads"],
                relative_attention_num_buckets=config["relative_attention_num_buckets"],
                relative_attention_max_distance=config["relative_attention_max_distance"],
                dropout_rate=config["dropout_prob"],
                feed_forward_proj=config["feed_forward_proj"],
            )
        )
        self.enable_amp = bool(config["enable_amp"])
        self.decode_stats = self._empty_stats()

    def trainer_hooks(self, config):
        """Validation with ``valid_beam_size``; the invalid-ID rate after every evaluation."""
        return [ValidationBeam(), DecodeStats()]

    # ------------------------------------------------------------------ inputs
    def _check_beam(self, beam, key="beam_size"):
        if beam < self.max_topk:
            raise ConfigError(
                f"{key}={beam} is smaller than max(topk)={self.max_topk}: the beam returns the ranked "
                f"list, so set {key} >= {self.max_topk}."
            )

    # the code table's tensors, as attributes of the model (read-only views of ``self.sid``)
    @property
    def item_tokens(self) -> torch.Tensor:
        return self.sid.item_tokens

    @property
    def offsets(self) -> torch.Tensor:
        return self.sid.offsets

    @property
    def trie(self) -> PrefixTrie:
        return self.sid.trie

    def encoder_inputs(
        self, item_seq, item_seq_len, user_id=None, table: Optional[SemanticIDTable] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[user] + history codes + [EOS]`` padded to the batch's longest history.

        item_seq: ``[B, M]`` item ids, right-padded with 0 (RecBole layout); item_seq_len: ``[B]``.
        ``table``: whose codes to use (default: the model's ``sid``).
        Returns input_ids ``[B, 2 + m*L]`` (m = max length in the batch) and its bool mask.
        """
        table = table or self.sid
        B, L = item_seq.shape[0], table.n_levels
        m = max(int(item_seq_len.max()), 1)
        tokens = table.item_tokens[item_seq[:, :m]].flatten(1)  # [B, m*L]; padding items -> 0
        ids = tokens.new_zeros(B, m * L + 2)
        if self.n_user_tokens > 0:
            uid = user_id if user_id is not None else torch.zeros_like(item_seq_len)
            ids[:, 0] = self.user_token_start + uid % self.n_user_tokens
            ids[:, 1:-1] = tokens
            eos_pos = 1 + item_seq_len * L
        else:  # no user token: shift left by one
            ids = ids[:, 1:]
            ids[:, :-1] = tokens
            eos_pos = item_seq_len * L
        ids.scatter_(1, eos_pos.unsqueeze(1), self.eos_token)
        return ids, ids != 0

    def _interaction_inputs(self, interaction, table: Optional[SemanticIDTable] = None):
        user = interaction[self.USER_ID] if self.USER_ID in interaction else None
        return self.encoder_inputs(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], user, table)

    def target_labels(self, items, table: Optional[SemanticIDTable] = None) -> torch.Tensor:
        """Labels ``[B, L+1]`` = the item's code tokens (of ``table``, default ``sid``) + EOS."""
        eos = torch.full_like(items, self.eos_token).unsqueeze(1)
        return torch.cat([(table or self.sid).item_tokens[items], eos], 1)

    # ------------------------------------------------------------------ T5 passes
    def encode(self, input_ids, attention_mask) -> torch.Tensor:
        return self.t5.encode(input_ids, attention_mask)  # [B, S, d]

    def decode_logits(self, encoder_hidden, attention_mask, labels) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]`` for ``labels [B, T]`` (decoder input = labels shifted right)."""
        logits, _ = self.t5.decode(self.shift_right(labels).unsqueeze(1), self.t5.cross_states(encoder_hidden, attention_mask))
        return logits.squeeze(1)

    @staticmethod
    def shift_right(labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs of ``labels [..., T]``: the start token 0, then ``labels[..., :-1]``."""
        return torch.cat([labels.new_zeros(*labels.shape[:-1], 1), labels[..., :-1]], -1)

    def label_logits(self, interaction, items=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, L+1, V]`` and labels ``[B, L+1]`` of the target (or ``items``) under teacher forcing.

        Where a subclass's losses on one target per user start (APAO's cross-entropy); many candidates
        per user are decoded at once instead (``TIGER_APAO.candidate_log_probs``).
        """
        input_ids, mask = self._interaction_inputs(interaction)
        items = interaction[self.POS_ITEM_ID] if items is None else items
        labels = self.target_labels(items)
        return self.decode_logits(self.encode(input_ids, mask), mask, labels), labels

    @staticmethod
    def label_log_probs(logits, labels) -> torch.Tensor:
        """``log p(label_j | x, label_<j)`` ``[B, T]`` (full-vocabulary log-softmax)."""
        return torch.log_softmax(logits.float(), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)

    def forward(self, interaction):
        return self.label_logits(interaction)

    def calculate_loss(self, interaction):
        logits, labels = self.label_logits(interaction)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))

    def predict(self, interaction):
        """Joint log-prob of the candidate's L code tokens (= its beam score)."""
        logits, labels = self.label_logits(interaction, interaction[self.ITEM_ID])
        return self.label_log_probs(logits, labels)[:, : self.n_levels].sum(-1)

    # ------------------------------------------------------------------ decoding
    @contextlib.contextmanager
    def using_beam(self, beam_size: int):
        """Temporarily decode with ``beam_size`` (the trainer uses it for validation)."""
        self._check_beam(beam_size)
        old, self.eval_beam_size = self.eval_beam_size, beam_size
        try:
            yield self
        finally:
            self.eval_beam_size = old

    @torch.no_grad()
    def generate(
        self, interaction, beam_size: Optional[int] = None, decoding: Optional[str] = None, on_step=None,
        table: Optional[SemanticIDTable] = None,
    ) -> BeamResult:
        """Beam search for every user of ``interaction``; beams best first (``on_step``: see beam_search).

        ``table``: the code table to decode (default: the model's ``sid``).
        """
        table = table or self.sid
        beam_size = beam_size or self.eval_beam_size
        decoding = (decoding or self.decoding).lower()
        input_ids, mask = self._interaction_inputs(interaction, table)
        with self.autocast(input_ids.device):
            decoder = T5StepDecoder(self.t5, self.encode(input_ids, mask), mask)
            return beam_search(
                decoder, table.trie, table.offsets, beam_size, constrained=decoding == "constrained", on_step=on_step
            )

    def autocast(self, device):
        """bfloat16 autocast when ``enable_amp`` is set (RecBole's trainer autocasts the training loss the same way)."""
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=self.enable_amp)

    def full_sort_predict(self, interaction):
        self._check_beam(self.eval_beam_size)
        result = self.generate(interaction)
        self._update_stats(result)
        return self.beam_to_scores(result.items, self.n_items)

    @staticmethod
    def beam_to_scores(items: torch.Tensor, n_items: int) -> torch.Tensor:
        """``[B, W]`` ranked item ids (-1 = invalid) -> ``[B, n_items]`` scores (see module docstring)."""
        valid = items > 0
        rank = valid.long().cumsum(1) - 1  # rank among valid beams
        beam_score = (valid.sum(1, keepdim=True) - rank).float()
        floor = -1.0 - torch.arange(n_items, device=items.device, dtype=torch.float) / n_items
        scores = floor.unsqueeze(0).repeat(items.shape[0], 1)
        scores[:, 0] = -3.0
        # invalid beams write the padding item's floor into column 0 (a no-op)
        scores.scatter_(1, torch.where(valid, items, 0), torch.where(valid, beam_score, -3.0))
        return scores

    @staticmethod
    def _empty_stats():
        return {"users": 0, "beams": 0, "invalid": 0, "topk_beams": 0, "topk_invalid": 0}

    def _update_stats(self, result: BeamResult):
        live = torch.isfinite(result.scores)
        bad = live & ~result.valid
        k = self.max_topk or result.items.shape[1]
        s = self.decode_stats
        s["users"] += result.items.shape[0]
        s["beams"] += int(live.sum())
        s["invalid"] += int(bad.sum())
        s["topk_beams"] += int(live[:, :k].sum())
        s["topk_invalid"] += int(bad[:, :k].sum())

    def pop_decode_stats(self) -> dict:
        """Invalid-ID rates since the last call (all beams and the top max(topk)), then reset."""
        s, self.decode_stats = self.decode_stats, self._empty_stats()
        s["invalid_rate"] = s["invalid"] / max(s["beams"], 1)
        s["topk_invalid_rate"] = s["topk_invalid"] / max(s["topk_beams"], 1)
        return s
