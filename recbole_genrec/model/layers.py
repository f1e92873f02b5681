"""Shared pieces for generative recommenders: a KV-cached T5 decoder for beam search.

:class:`T5StepDecoder` runs the decoder of a ``transformers.T5ForConditionalGeneration``
one token at a time for ``B`` users x ``W`` beams, reusing the model's own weights (it is
an inference path, not a second model). Compared with calling the HF decoder on
``B*W`` rows it

- computes the cross-attention keys/values once per **user** (not per beam) and lets all
  beams of a user attend to them by broadcasting (no ``repeat_interleave`` of encoder
  states), and
- keeps the self-attention cache as ``[B, W, H, t, d_kv]`` so a beam reorder is one gather.

It is exact: tests/test_beam_search.py checks its logits against HF's teacher-forced
decoder. It assumes T5 v1.0 layout (``feed_forward_proj`` relu/gated-gelu both work, since
the FF sublayer is called as a module) and eval mode (no dropout).
"""

from typing import Optional

import torch
from torch import nn


class T5StepDecoder:
    """Incremental T5 decoding for :func:`beam_search.beam_search`.

    Args:
        t5: a ``T5ForConditionalGeneration`` (eval mode).
        encoder_hidden: ``[B, S, d_model]`` encoder output.
        encoder_mask: ``[B, S]`` 1/True on real tokens.
        max_steps: the most tokens that will be fed (start token included).
    """

    def __init__(self, t5: nn.Module, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor, max_steps: int):
        cfg = t5.config
        self.t5 = t5
        self.dec = t5.decoder
        self.H, self.dk = cfg.num_heads, cfg.d_kv
        self.start_id = cfg.decoder_start_token_id or 0
        self.out_scale = cfg.d_model**-0.5 if getattr(cfg, "scale_decoder_outputs", True) else 1.0
        B, S, _ = encoder_hidden.shape
        self.B = B
        dtype = encoder_hidden.dtype
        # additive cross-attention mask [B, 1, 1, S] (broadcast over heads and beams)
        self.cross_bias = (~encoder_mask.bool()).to(dtype)[:, None, None, :] * torch.finfo(dtype).min
        self.cross_kv = []  # per layer: K, V as [B, H, S, d_kv]
        for block in self.dec.block:
            att = block.layer[1].EncDecAttention
            k = att.k(encoder_hidden).view(B, S, self.H, self.dk).transpose(1, 2)
            v = att.v(encoder_hidden).view(B, S, self.H, self.dk).transpose(1, 2)
            self.cross_kv.append((k, v))
        # decoder self-attention relative position bias for all (query, key) positions: [H, T, T]
        att0 = self.dec.block[0].layer[0].SelfAttention
        self.pos_bias = att0.compute_bias(max_steps, max_steps, device=encoder_hidden.device)[0].to(dtype)
        self.self_kv = None  # per layer: K, V as [B, W, H, t, d_kv]
        self.t = 0

    def step(self, tokens: Optional[torch.Tensor], parent: Optional[torch.Tensor]) -> torch.Tensor:
        if tokens is None:  # start token, one beam per user
            tokens = torch.full((self.B, 1), self.start_id, dtype=torch.long, device=self.cross_bias.device)
            self.self_kv = [None] * len(self.dec.block)
            self.t = 0
        else:
            rows = torch.arange(self.B, device=tokens.device)[:, None]
            self.self_kv = [(k[rows, parent], v[rows, parent]) for k, v in self.self_kv]  # reorder beams
        B, W = tokens.shape
        x = self.dec.embed_tokens(tokens)  # [B, W, d]
        bias = self.pos_bias[:, self.t, : self.t + 1]  # [H, t+1]
        for i, block in enumerate(self.dec.block):
            sa_layer, ca_layer, ff_layer = block.layer[0], block.layer[1], block.layer[-1]
            # causal self-attention over the beam's own prefix (cache + this token)
            sa = sa_layer.SelfAttention
            h = sa_layer.layer_norm(x)
            q = sa.q(h).view(B, W, self.H, 1, self.dk)
            k = sa.k(h).view(B, W, self.H, 1, self.dk)
            v = sa.v(h).view(B, W, self.H, 1, self.dk)
            if self.self_kv[i] is not None:
                k = torch.cat([self.self_kv[i][0], k], 3)  # [B, W, H, t+1, dk]
                v = torch.cat([self.self_kv[i][1], v], 3)
            self.self_kv[i] = (k, v)
            att = torch.softmax(q @ k.transpose(-1, -2) + bias[:, None, :], dim=-1)  # [B, W, H, 1, t+1]
            x = x + sa.o((att @ v).reshape(B, W, self.H * self.dk))
            # cross-attention: the W beams are W queries against the user's encoder K/V
            ca = ca_layer.EncDecAttention
            h = ca_layer.layer_norm(x)
            q = ca.q(h).view(B, W, self.H, self.dk).transpose(1, 2)  # [B, H, W, dk]
            ck, cv = self.cross_kv[i]
            att = torch.softmax(q @ ck.transpose(-1, -2) + self.cross_bias, dim=-1)  # [B, H, W, S]
            x = x + ca.o((att @ cv).transpose(1, 2).reshape(B, W, self.H * self.dk))
            x = ff_layer(x)
        self.t += 1
        x = self.dec.final_layer_norm(x) * self.out_scale
        return self.t5.lm_head(x)  # [B, W, V]
