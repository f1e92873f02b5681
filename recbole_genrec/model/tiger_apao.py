"""TIGER_APAO: TIGER trained with APAO's prefix-aware objectives.

Reference:
    Yu et al. "APAO: Adaptive Prefix-Aware Optimization for Generative Recommendation."
    arXiv:2603.02730, 2026. Where the paper is not public, the official code (yuyq18/APAO) is
    the reference.

TIGER is trained with token cross-entropy but served by beam search, which prunes by prefix.
APAO adds a loss on every prefix length ``t = 1..L`` and weights the prefixes towards the
currently worst one::

    L = CE + apao_beta * sum_t w_t l_t          (apao_wo_ce: L = apao_beta * sum_t w_t l_t)

``apao_loss`` picks ``l_t`` (math in :mod:`recbole_genrec.model.apao_losses`):

* ``none``: exactly TIGER (``calculate_loss`` is TIGER's; same loss, gradients and metrics
  bit for bit under one seed).
* ``pointwise`` (the default here: no extra decoder work, so the cheapest APAO): the
  length-normalised NLL of the target's prefix, from TIGER's own teacher-forced pass.
* ``pairwise``: a sampled softmax of the target's prefix against the prefixes of
  ``apao_neg_k`` random items, duplicate prefixes masked, negatives scaled by
  ``kappa_t = (N_t - 1) / (1 + m_t)``, in log space.

``w`` = detached worst-prefix weights ``w ∝ l * exp(apao_eta * l)`` (``apao_eta = 0``: ``w ∝ l``),
recomputed from scratch on every training batch.

Pairwise cost. The encoder runs once per example. The positive goes through TIGER's own
:meth:`decode_logits` (so CE is TIGER's, from the same pass). The ``K`` negatives run through
:meth:`~recbole_genrec.model.t5.T5.decode` (the decoder pass of training and beam search), so all
``K`` candidates of an example read **one** copy of its cross-attention keys/values (computed once
per example), with T5's dropout at T5's places. Their first code's log-prob is read from the
positive's step-0 distribution (the decoder's first position sees only the start token, so it is
the same for every candidate), and only positions ``1..L-1`` go through the output layer.

Where the spec left the choice to us (see also the yaml):

* Prefix lengths are ``t = 1..L`` over **all** code levels of the dataset's IDs, including
  the collision level the plugin appends to colliding codes (Office rq-kmeans: 4 + 1 levels).
  EOS is never part of a prefix. ``N_t`` is counted over the catalogue's real items.
* Negatives: ``(B, K)`` item ids drawn uniformly with replacement over the real items
  ``1..n_items-1`` on the model's device, **per training batch** (not per example per epoch
  as the reference): a ``torch.Generator`` seeded by ``(seed, epoch, batch index in the
  epoch)``, so negatives change between epochs, are reproducible under a seed, and do not
  touch the global RNG (dropout draws are unchanged). ``TIGER_APAOTrainer`` sets the epoch.
  Uniform over items equals uniform over distinct codes when codes do not collide (the
  plugin's collision level makes them distinct).
* The adaptive weights use the whole training batch (the reference: 128-example
  micro-batches of a 1024 batch); ``ce_tau`` divides the logits before every training
  log-softmax (CE and both prefix losses) but not at evaluation (beam scores are TIGER's).
* Diagnostics: per-prefix ``l_t``, ``w_t`` and (pairwise) the positive's AUC/MRR among the
  kept candidates are averaged over an epoch (:meth:`pop_apao_stats`, logged by
  ``TIGER_APAOTrainer``). At every evaluation the **prefix-survival rate** (fraction of users
  whose target's length-``t`` prefix is in the beam after step ``t``) is recorded through
  ``beam_search``'s ``on_step`` hook (:meth:`generate_with_prefixes`).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from recbole_genrec.model import apao_losses as AL
from recbole_genrec.model.tiger import TIGER
from recbole_genrec.trainer.hooks import APAODiagnostics, PrefixSurvival

APAO_LOSSES = ("none", "pointwise", "pairwise")


class TIGER_APAO(TIGER):
    def __init__(self, config, dataset):
        super().__init__(config, dataset)  # no extra parameters or RNG draws: same init as TIGER
        self.apao_loss = str(config["apao_loss"]).lower()
        if self.apao_loss not in APAO_LOSSES:
            raise ValueError(f"apao_loss must be one of {', '.join(APAO_LOSSES)}; got {config['apao_loss']!r}")
        self.apao_beta = float(config["apao_beta"])
        self.apao_prefix_tau = float(config["apao_prefix_tau"])
        self.apao_eta = float(config["apao_eta"])
        self.apao_neg_k = int(config["apao_neg_k"])
        self.apao_neg_scale = bool(config["apao_neg_scale"])
        self.ce_tau = float(config["ce_tau"])
        self.apao_wo_ce = bool(config["apao_wo_ce"])
        if self.apao_prefix_tau <= 0 or self.ce_tau <= 0:
            raise ValueError(f"apao_prefix_tau and ce_tau must be > 0, got {self.apao_prefix_tau}, {self.ce_tau}")
        if self.apao_loss == "pairwise" and self.apao_neg_k < 1:
            raise ValueError(f"apao_neg_k must be >= 1 for apao_loss: pairwise, got {self.apao_neg_k}")
        if self.n_items < 2:
            raise ValueError("TIGER_APAO needs at least one real item")
        self.seed = int(config["seed"])
        self.set_apao_epoch(0)  # set again by the APAODiagnostics trainer hook at every epoch start
        self._stats = {}
        self.survival = self._empty_survival()

    def trainer_hooks(self, config):
        """TIGER's, plus the epoch key of the negatives, the loss diagnostics and prefix survival."""
        return super().trainer_hooks(config) + [APAODiagnostics(), PrefixSurvival()]

    # ------------------------------------------------------------------ training
    def set_apao_epoch(self, epoch: int):
        """Key of this epoch's negatives (the batch counter restarts)."""
        self.apao_epoch, self._apao_batch = int(epoch), 0

    def _tau(self, logits):
        return logits if self.ce_tau == 1.0 else logits / self.ce_tau

    def sample_negatives(self, batch_size: int, device=None) -> torch.Tensor:
        """``[B, K]`` item ids uniform over ``1..n_items-1``, keyed by (seed, epoch, batch)."""
        device = device or self.item_tokens.device
        gen = torch.Generator(device=device)
        gen.manual_seed((self.seed * 1_000_003 + self.apao_epoch) * 1_000_003 + self._apao_batch)
        return torch.randint(1, self.n_items, (batch_size, self.apao_neg_k), generator=gen, device=device)

    def candidate_log_probs(self, interaction, negatives: torch.Tensor):
        """Teacher-forced code-token log-probs of the positive and of ``negatives``.

        Returns ``(logits, labels, pos_logp [B, L], neg_logp [B, K, L])``: TIGER's positive
        logits/labels (for CE), and full-vocabulary log-probs (after ``ce_tau``) of each code token.
        """
        L = self.n_levels
        input_ids, mask = self._interaction_inputs(interaction)
        labels = self.target_labels(interaction[self.POS_ITEM_ID])
        hidden = self.encode(input_ids, mask)
        logits = self.decode_logits(hidden, mask, labels)  # [B, L+1, V]
        logp_pos_all = torch.log_softmax(self._tau(logits).float(), -1)  # [B, L+1, V]
        pos_logp = logp_pos_all[:, :L].gather(-1, labels[:, :L, None]).squeeze(-1)  # [B, L]
        neg_tokens = self.item_tokens[negatives]  # [B, K, L]
        neg_logp = logp_pos_all[:, 0].gather(1, neg_tokens[..., 0]).unsqueeze(-1)  # step 0 sees only the start token
        if L > 1:
            cross = self.t5.cross_states(hidden, mask)  # once per example, shared by its K candidates
            neg_logits = self._tau(self.t5.decode(self.shift_right(neg_tokens), cross, first_output=1)[0]).float()
            rest = neg_logits.gather(-1, neg_tokens[..., 1:, None]).squeeze(-1) - torch.logsumexp(neg_logits, -1)
            neg_logp = torch.cat([neg_logp, rest], -1)  # [B, K, L]
        return logits, labels, pos_logp, neg_logp

    def prefix_losses(self, interaction):
        """``(CE, l [L], extras)`` of the configured ``apao_loss`` on one batch."""
        if self.apao_loss == "pointwise":
            logits, labels = self.label_logits(interaction)
            ce = F.cross_entropy(self._tau(logits).reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
            logp = self.label_log_probs(self._tau(logits), labels)[:, : self.n_levels]
            return ce, AL.pointwise_prefix_losses(logp, self.apao_prefix_tau), {}
        pos = interaction[self.POS_ITEM_ID]
        negatives = self.sample_negatives(pos.shape[0], pos.device)
        self._apao_batch += 1
        logits, labels, pos_logp, neg_logp = self.candidate_log_probs(interaction, negatives)
        ce = F.cross_entropy(self._tau(logits).reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        scores = torch.cat([pos_logp.unsqueeze(1), neg_logp], 1).cumsum(-1)  # [B, 1+K, L]
        cand = torch.cat([pos.unsqueeze(1), negatives], 1)  # [B, 1+K]
        keep = AL.first_occurrence_mask(self.sid.prefix_id[cand].transpose(1, 2))  # [B, L, 1+K]
        losses = AL.pairwise_prefix_losses(scores, keep, self.sid.n_prefixes, self.apao_prefix_tau, self.apao_neg_scale)
        auc, mrr = AL.prefix_ranking_stats(scores.detach(), keep)
        return ce, losses, {"auc": auc, "mrr": mrr, "kept_negatives": keep[..., 1:].float().sum(-1).mean(0)}

    def calculate_loss(self, interaction):
        if self.apao_loss == "none":
            return super().calculate_loss(interaction)
        ce, losses, extras = self.prefix_losses(interaction)
        loss, w = AL.apao_objective(ce, losses, self.apao_beta, self.apao_eta, self.apao_wo_ce)
        self._accumulate({"ce": ce.detach().reshape(1), "loss": losses.detach(), "weight": w, **extras})
        return loss

    def _accumulate(self, values):
        s = self._stats
        s["batches"] = s.get("batches", 0) + 1
        for key, value in values.items():
            value = value.detach().float().cpu()
            s[key] = s[key] + value if key in s else value.clone()

    def pop_apao_stats(self) -> dict:
        """Per-prefix means since the last call (``loss``, ``weight``, pairwise ``auc``/``mrr``), then reset."""
        s, self._stats = self._stats, {}
        n = s.pop("batches", 0)
        out = {k: (v / n).tolist() for k, v in s.items()} if n else {}
        if "ce" in out:
            out["ce"] = out["ce"][0]
        out["batches"] = n
        return out

    # ------------------------------------------------------------------ evaluation
    def _empty_survival(self):
        return {"users": 0, "hits": torch.zeros(self.n_levels, dtype=torch.long)}

    @torch.no_grad()
    def generate_with_prefixes(self, interaction, beam_size: Optional[int] = None, decoding: Optional[str] = None):
        """TIGER's :meth:`generate`, also returning the beams after every step.

        ``prefixes[t-1]`` is ``[B, W_t, t]``: the token prefixes kept after step ``t``
        (dead beams, which exist only when fewer than ``W`` valid paths do, are ``-1``).
        """
        prefixes = []

        def record(t, codes, scores):
            tokens = codes + self.offsets[: t + 1]
            prefixes.append(torch.where(torch.isfinite(scores).unsqueeze(-1), tokens, -1))

        return self.generate(interaction, beam_size, decoding, on_step=record), prefixes

    def prefix_survival_hits(self, prefixes, targets: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` bool: the target's length-``t`` token prefix is in the beam after step ``t``."""
        target = self.item_tokens[targets]  # [B, L]
        hits = [(beams == target[:, None, :t]).all(-1).any(-1) for t, beams in enumerate(prefixes, start=1)]
        return torch.stack(hits, 1)

    def full_sort_predict(self, interaction):
        self._check_beam(self.eval_beam_size)
        result, prefixes = self.generate_with_prefixes(interaction)
        self._update_stats(result)
        if self.POS_ITEM_ID in interaction:
            hits = self.prefix_survival_hits(prefixes, interaction[self.POS_ITEM_ID])
            self.survival["users"] += hits.shape[0]
            self.survival["hits"] += hits.sum(0).cpu()
        return self.beam_to_scores(result.items, self.n_items)

    def pop_prefix_survival(self) -> list:
        """Prefix-survival rate for ``t = 1..L`` since the last call, then reset."""
        s, self.survival = self.survival, self._empty_survival()
        return (s["hits"].float() / max(s["users"], 1)).tolist()
