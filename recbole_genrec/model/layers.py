"""One T5 decoder pass for many continuations per user, and the beam-search step built on it.

:class:`T5DecoderPass` runs the decoder of a ``transformers.T5ForConditionalGeneration`` for
``B`` users x ``N`` rows each (beams in beam search, candidate items in APAO's scoring),
``T`` new tokens per row, optionally after a cached prefix, reusing the model's own weights
(it is a different batching of the same model, not a second model). Compared with calling
the HF decoder on ``B*N`` rows it

- computes the cross-attention keys/values once per **user** (not per row) and lets all
  rows of a user attend to them by broadcasting (no ``repeat_interleave`` of encoder
  states), and
- keeps the self-attention cache as ``[B, N, H, t, d_kv]`` so a beam reorder is one gather.

Same math as HF's T5 decoder, dropout at HF's places (active in training mode, so APAO's
candidate scoring trains through it), and HF's output-scaling rule (``scale_decoder_outputs``,
which transformers 5 derives from the saved ``tie_word_embeddings``; transformers 4 read
``tie_word_embeddings`` itself). tests/test_beam_search.py and tests/test_apao.py check it
against HF's teacher-forced decoder. Works for ``feed_forward_proj`` relu and gated-gelu (the
feed-forward sublayer is called as a module).

:class:`T5StepDecoder` is the :class:`~recbole_genrec.model.beam_search.StepDecoder` of
beam search: one token per beam per call, on :class:`T5DecoderPass`.
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

KVCache = List[Tuple[torch.Tensor, torch.Tensor]]


def scales_decoder_output(config) -> bool:
    """HF T5's rule: the decoder output is multiplied by ``d_model ** -0.5`` before the LM head."""
    return bool(getattr(config, "scale_decoder_outputs", config.tie_word_embeddings))


class T5DecoderPass:
    """The T5 decoder of ``t5`` against one encoder output, for ``N`` token rows per user.

    Args:
        t5: a ``T5ForConditionalGeneration``.
        encoder_hidden: ``[B, S, d_model]`` encoder output.
        encoder_mask: ``[B, S]`` 1/True on real tokens.
        max_len: the most decoder positions (cached + new) a call will reach.
    """

    def __init__(self, t5: nn.Module, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor, max_len: int):
        cfg = t5.config
        self.t5, self.dec = t5, t5.decoder
        self.H, self.dk = cfg.num_heads, cfg.d_kv
        self.out_scale = cfg.d_model**-0.5 if scales_decoder_output(cfg) else None
        B, S, _ = encoder_hidden.shape
        self.B = B
        self.dtype = dtype = encoder_hidden.dtype
        # additive cross-attention mask [B, 1, 1, S] (broadcast over heads and rows)
        self.cross_bias = (~encoder_mask.bool()).to(dtype)[:, None, None, :] * torch.finfo(dtype).min
        self.cross_kv = []  # per layer: K, V as [B, H, S, d_kv], once per user
        for block in self.dec.block:
            att = block.layer[1].EncDecAttention
            k = att.k(encoder_hidden).view(B, S, self.H, self.dk).transpose(1, 2)
            v = att.v(encoder_hidden).view(B, S, self.H, self.dk).transpose(1, 2)
            self.cross_kv.append((k, v))
        # decoder self-attention relative position bias for all (query, key) positions: [H, T, T]
        att0 = self.dec.block[0].layer[0].SelfAttention
        self.pos_bias = att0.compute_bias(max_len, max_len, device=encoder_hidden.device)[0].to(dtype)

    def __call__(
        self, tokens: torch.Tensor, past: Optional[KVCache] = None, first_output: int = 0
    ) -> Tuple[torch.Tensor, KVCache]:
        """Logits ``[B, N, T - first_output, V]`` of ``tokens [B, N, T]`` and the updated cache.

        ``past``: per layer ``(K, V)`` ``[B, N, H, t, d_kv]`` of the ``t`` tokens before (row ``n``
        of ``tokens`` continues row ``n`` of the cache) or ``None``. ``first_output`` skips
        the output layer for the first positions (their logits are not needed).
        """
        B, N, T = tokens.shape
        H, dk = self.H, self.dk
        t0 = 0 if past is None else past[0][0].shape[3]
        bias = self.pos_bias[:, t0 : t0 + T, : t0 + T]  # [H, T, t0+T]
        if T > 1:  # causal: a new token sees the cache and the new tokens up to itself
            causal = torch.full((T, t0 + T), torch.finfo(self.dtype).min, device=tokens.device, dtype=self.dtype)
            bias = bias + causal.triu(t0 + 1)
        x = self.dec.dropout(self.dec.embed_tokens(tokens))  # [B, N, T, d]
        present = []
        for i, block in enumerate(self.dec.block):
            sa_layer, ca_layer, ff_layer = block.layer[0], block.layer[1], block.layer[-1]
            # causal self-attention over the row's own prefix (cache + new tokens); T5: no 1/sqrt(d)
            sa = sa_layer.SelfAttention
            h = sa_layer.layer_norm(x)
            q, k, v = (lin(h).view(B, N, T, H, dk).transpose(2, 3) for lin in (sa.q, sa.k, sa.v))  # [B, N, H, T, dk]
            if past is not None:
                k = torch.cat([past[i][0], k], 3)  # [B, N, H, t0+T, dk]
                v = torch.cat([past[i][1], v], 3)
            present.append((k, v))
            att = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)  # [B, N, H, T, t0+T]
            att = F.dropout(att, p=sa.dropout, training=sa.training)
            x = x + sa_layer.dropout(sa.o((att @ v).transpose(2, 3).reshape(B, N, T, H * dk)))
            # cross-attention: the N*T new positions of a user are queries against its encoder K/V
            ca = ca_layer.EncDecAttention
            h = ca_layer.layer_norm(x)
            q = ca.q(h).view(B, N * T, H, dk).transpose(1, 2)  # [B, H, N*T, dk]
            ck, cv = self.cross_kv[i]
            att = torch.softmax(q @ ck.transpose(-1, -2) + self.cross_bias, dim=-1)  # [B, H, N*T, S]
            att = F.dropout(att, p=ca.dropout, training=ca.training)
            x = x + ca_layer.dropout(ca.o((att @ cv).transpose(1, 2).reshape(B, N, T, H * dk)))
            x = ff_layer(x)
        x = self.dec.dropout(self.dec.final_layer_norm(x[:, :, first_output:]))
        if self.out_scale is not None:
            x = x * self.out_scale
        return self.t5.lm_head(x), present


class T5StepDecoder:
    """Incremental T5 decoding for :func:`beam_search.beam_search` (eval mode).

    Args:
        t5: a ``T5ForConditionalGeneration`` (eval mode).
        encoder_hidden: ``[B, S, d_model]`` encoder output.
        encoder_mask: ``[B, S]`` 1/True on real tokens.
        max_steps: the most tokens that will be fed (start token included).
    """

    def __init__(self, t5: nn.Module, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor, max_steps: int):
        self.run = T5DecoderPass(t5, encoder_hidden, encoder_mask, max_len=max_steps)
        self.start_id = t5.config.decoder_start_token_id or 0
        self.self_kv: Optional[KVCache] = None  # per layer: K, V as [B, W, H, t, d_kv]

    def step(self, tokens: Optional[torch.Tensor], parent: Optional[torch.Tensor]) -> torch.Tensor:
        if tokens is None:  # start token, one beam per user
            tokens = torch.full((self.run.B, 1), self.start_id, dtype=torch.long, device=self.run.cross_bias.device)
            self.self_kv = None
        else:
            rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None]
            self.self_kv = [(k[rows, parent], v[rows, parent]) for k, v in self.self_kv]  # reorder beams
        logits, self.self_kv = self.run(tokens.unsqueeze(-1), self.self_kv)
        return logits.squeeze(2)  # [B, W, V]
