"""A compact T5 encoder-decoder (T5 v1.0 layout) with one KV-cached decoder API.

Reference:
    Colin Raffel et al. "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    Transformer." JMLR 2020.

What TIGER needs of T5 and nothing more: relative position bias (computed in the first layer
of each stack, shared by its layers), RMS layer norm, ReLU (or gated-GELU) feed-forward,
dropout at T5's places (embeddings, attention probabilities, every sublayer output, the
feed-forward hidden layer, after each stack's final norm), no ``1/sqrt(d)`` attention scaling,
input and output embeddings tied with the decoder output scaled by ``d_model ** -0.5``.
Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with the
relative position bias and the padding/causal masks as one additive mask and ``scale=1``
(fused kernels, bf16 under autocast).

:meth:`T5.decode` is the one decoder pass: ``B`` users x ``N`` rows (1 in training, beams
in beam search, candidate items in APAO) x ``T`` new tokens, optionally after a cached
prefix, against cross-attention keys/values computed once per user (:meth:`T5.cross_states`).
:class:`T5StepDecoder` drives it one token at a time for beam search.

Parameter names, shapes and tying are those of ``transformers.T5ForConditionalGeneration``
(so its state dicts load as they are), and :meth:`T5.__init__` draws its initial weights as
transformers' T5 does, in the same order: under the same seed both start from the same weights
(tests/test_t5.py checks the weights and the logits against transformers).
"""

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["T5Dims", "T5", "CrossStates", "T5StepDecoder", "relative_position_bucket"]

KVCache = List[Tuple[torch.Tensor, torch.Tensor]]


@dataclass
class T5Dims:
    """Sizes of a :class:`T5` (names as transformers' ``T5Config``)."""

    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    relative_attention_num_buckets: int
    relative_attention_max_distance: int
    dropout_rate: float
    feed_forward_proj: str = "relu"
    layer_norm_epsilon: float = 1e-6


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int):
    """T5's bucket of ``key - query`` positions: exact for small distances, log-spaced up to ``max_distance``."""
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class T5LayerNorm(nn.Module):
    """RMS norm without mean or bias, computed in float32."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        x = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x


class T5Attention(nn.Module):
    """Multi-head attention without scaling; the first layer of a stack owns the position bias."""

    def __init__(self, dims: T5Dims, has_relative_attention_bias: bool, bidirectional: bool):
        super().__init__()
        inner = dims.num_heads * dims.d_kv
        self.n_heads, self.d_kv, self.dropout = dims.num_heads, dims.d_kv, dims.dropout_rate
        self.q = nn.Linear(dims.d_model, inner, bias=False)
        self.k = nn.Linear(dims.d_model, inner, bias=False)
        self.v = nn.Linear(dims.d_model, inner, bias=False)
        self.o = nn.Linear(inner, dims.d_model, bias=False)
        self.bidirectional = bidirectional
        self.num_buckets = dims.relative_attention_num_buckets
        self.max_distance = dims.relative_attention_max_distance
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(self.num_buckets, self.n_heads)

    def position_bias(self, q_len: int, k_len: int, device=None, q_start: int = 0) -> torch.Tensor:
        """``[1, H, q_len, k_len]`` bias of queries at ``q_start..`` against keys at ``0..``."""
        context = torch.arange(q_start, q_start + q_len, device=device)[:, None]
        memory = torch.arange(k_len, device=device)[None, :]
        buckets = relative_position_bucket(memory - context, self.bidirectional, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def heads(self, lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """``[..., T, d] -> [..., H, T, d_kv]``."""
        return lin(x).unflatten(-1, (self.n_heads, self.d_kv)).transpose(-2, -3)

    def attend(self, q, k, v, mask) -> torch.Tensor:
        """``softmax(q k^T + mask) v`` (4-D ``[batch, H, T, d_kv]``), merged heads through ``o``."""
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), dropout_p=p, scale=1.0)
        return self.o(out.transpose(1, 2).flatten(2))  # [batch, T, H*d_kv] -> [batch, T, d]


class T5LayerSelfAttention(nn.Module):
    def __init__(self, dims: T5Dims, has_relative_attention_bias: bool, bidirectional: bool):
        super().__init__()
        self.SelfAttention = T5Attention(dims, has_relative_attention_bias, bidirectional)
        self.layer_norm = T5LayerNorm(dims.d_model, dims.layer_norm_epsilon)
        self.dropout = nn.Dropout(dims.dropout_rate)


class T5LayerCrossAttention(nn.Module):
    def __init__(self, dims: T5Dims):
        super().__init__()
        self.EncDecAttention = T5Attention(dims, False, bidirectional=False)
        self.layer_norm = T5LayerNorm(dims.d_model, dims.layer_norm_epsilon)
        self.dropout = nn.Dropout(dims.dropout_rate)


class T5DenseActDense(nn.Module):
    def __init__(self, dims: T5Dims):
        super().__init__()
        self.wi = nn.Linear(dims.d_model, dims.d_ff, bias=False)
        self.wo = nn.Linear(dims.d_ff, dims.d_model, bias=False)
        self.dropout = nn.Dropout(dims.dropout_rate)

    def forward(self, x):
        return self.wo(self.dropout(F.relu(self.wi(x))))


class T5DenseGatedActDense(nn.Module):
    def __init__(self, dims: T5Dims):
        super().__init__()
        self.wi_0 = nn.Linear(dims.d_model, dims.d_ff, bias=False)
        self.wi_1 = nn.Linear(dims.d_model, dims.d_ff, bias=False)
        self.wo = nn.Linear(dims.d_ff, dims.d_model, bias=False)
        self.dropout = nn.Dropout(dims.dropout_rate)

    def forward(self, x):
        return self.wo(self.dropout(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)))


class T5LayerFF(nn.Module):
    def __init__(self, dims: T5Dims):
        super().__init__()
        gated = dims.feed_forward_proj == "gated-gelu"
        if not gated and dims.feed_forward_proj != "relu":
            raise ValueError(f"feed_forward_proj must be relu or gated-gelu, got {dims.feed_forward_proj!r}")
        self.DenseReluDense = T5DenseGatedActDense(dims) if gated else T5DenseActDense(dims)
        self.layer_norm = T5LayerNorm(dims.d_model, dims.layer_norm_epsilon)
        self.dropout = nn.Dropout(dims.dropout_rate)

    def forward(self, x):
        return x + self.dropout(self.DenseReluDense(self.layer_norm(x)))


class T5Block(nn.Module):
    def __init__(self, dims: T5Dims, first: bool, is_decoder: bool):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(dims, first, bidirectional=not is_decoder)])
        if is_decoder:
            self.layer.append(T5LayerCrossAttention(dims))
        self.layer.append(T5LayerFF(dims))


class T5Stack(nn.Module):
    def __init__(self, dims: T5Dims, is_decoder: bool):
        super().__init__()
        n_layers = dims.num_decoder_layers if is_decoder else dims.num_layers
        self.embed_tokens = nn.Embedding(dims.vocab_size, dims.d_model)  # tied to T5.shared
        self.block = nn.ModuleList([T5Block(dims, i == 0, is_decoder) for i in range(n_layers)])
        self.final_layer_norm = T5LayerNorm(dims.d_model, dims.layer_norm_epsilon)
        self.dropout = nn.Dropout(dims.dropout_rate)
        _init_like_transformers(self, dims)

    def self_bias(self, q_len, k_len, device, q_start=0) -> torch.Tensor:
        return self.block[0].layer[0].SelfAttention.position_bias(q_len, k_len, device, q_start)


class CrossStates(NamedTuple):
    """What every decoder call needs of one encoder output: per-layer keys/values and the mask."""

    kv: KVCache  # per decoder layer: K, V ``[B, H, S, d_kv]``
    mask: torch.Tensor  # additive ``[B, 1, 1, S]``: 0 on real tokens, a large negative on padding


def _padding_mask(attention_mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return (~attention_mask.bool()).to(dtype)[:, None, None, :] * torch.finfo(dtype).min


class T5(nn.Module):
    """T5 encoder-decoder with tied embeddings (pad = decoder start = token 0)."""

    def __init__(self, dims: T5Dims):
        super().__init__()
        self.dims = dims
        self.shared = nn.Embedding(dims.vocab_size, dims.d_model)
        self.encoder = T5Stack(dims, is_decoder=False)
        self.decoder = T5Stack(dims, is_decoder=True)
        self.lm_head = nn.Linear(dims.d_model, dims.vocab_size, bias=False)
        # transformers' top-level init, in its order (children first, then the model), then tying
        for module in (self.shared, self.lm_head):
            nn.init.normal_(module.weight, std=1.0)
        nn.init.normal_(self.shared.weight, std=1.0)
        self.encoder.embed_tokens.weight = self.decoder.embed_tokens.weight = self.lm_head.weight = self.shared.weight

    # ------------------------------------------------------------------ encoder
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, S, d_model]`` encoder output of ``input_ids [B, S]`` (mask: 1/True on real tokens)."""
        stack = self.encoder
        x = stack.dropout(stack.embed_tokens(input_ids))
        S = input_ids.shape[1]
        mask = stack.self_bias(S, S, input_ids.device) + _padding_mask(attention_mask)  # [B, H, S, S]
        for block in stack.block:
            sa_layer, ff_layer = block.layer[0], block.layer[1]
            att = sa_layer.SelfAttention
            h = sa_layer.layer_norm(x)
            x = x + sa_layer.dropout(att.attend(att.heads(att.q, h), att.heads(att.k, h), att.heads(att.v, h), mask))
            x = ff_layer(x)
        return stack.dropout(stack.final_layer_norm(x))

    # ------------------------------------------------------------------ decoder
    def cross_states(self, encoder_hidden: torch.Tensor, attention_mask: torch.Tensor) -> CrossStates:
        """Cross-attention keys/values of every decoder layer, computed once per user."""
        kv = []
        for block in self.decoder.block:
            att = block.layer[1].EncDecAttention
            kv.append((att.heads(att.k, encoder_hidden), att.heads(att.v, encoder_hidden)))
        return CrossStates(kv, _padding_mask(attention_mask))

    def decode(
        self, tokens: torch.Tensor, cross: CrossStates, past: Optional[KVCache] = None, first_output: int = 0
    ) -> Tuple[torch.Tensor, KVCache]:
        """Logits ``[B, N, T - first_output, V]`` of decoder inputs ``tokens [B, N, T]`` and the new cache.

        Row ``n`` of user ``b`` continues row ``n`` of ``past`` (per layer ``(K, V)``
        ``[B, N, H, t, d_kv]``, or ``None`` at the start); position ``j`` of the ``T`` new tokens
        sees the cached ``t`` tokens and new tokens ``0..j`` (causal). The ``N*T`` positions of a
        user attend to its cross-attention states together (no copy per row). ``first_output``
        skips the output layer for the first positions.
        """
        stack = self.decoder
        B, N, T = tokens.shape
        t0 = 0 if past is None else past[0][0].shape[3]
        mask = stack.self_bias(T, t0 + T, tokens.device, q_start=t0)  # [1, H, T, t0+T]
        if T > 1:
            causal = torch.full((T, t0 + T), torch.finfo(torch.float32).min, device=tokens.device).triu(t0 + 1)
            mask = mask + causal
        x = stack.dropout(stack.embed_tokens(tokens))  # [B, N, T, d]
        present = []
        for i, block in enumerate(stack.block):
            sa_layer, ca_layer, ff_layer = block.layer
            sa = sa_layer.SelfAttention
            h = sa_layer.layer_norm(x)
            q, k, v = sa.heads(sa.q, h), sa.heads(sa.k, h), sa.heads(sa.v, h)  # [B, N, H, T, dk]
            if past is not None:
                k, v = torch.cat([past[i][0], k], 3), torch.cat([past[i][1], v], 3)
            present.append((k, v))
            out = sa.attend(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), mask)  # [B*N, T, d]
            x = x + sa_layer.dropout(out.view(B, N, T, -1))
            ca = ca_layer.EncDecAttention
            h = ca_layer.layer_norm(x)
            q = ca.heads(ca.q, h.reshape(B, N * T, -1))  # [B, H, N*T, dk]
            ck, cv = cross.kv[i]
            x = x + ca_layer.dropout(ca.attend(q, ck, cv, cross.mask).view(B, N, T, -1))
            x = ff_layer(x)
        x = stack.dropout(stack.final_layer_norm(x[:, :, first_output:]))
        return self.lm_head(x * self.dims.d_model**-0.5), present

    def forward(self, input_ids, attention_mask, decoder_input_ids) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]`` (decoder inputs ``[B, T]``)."""
        hidden = self.encode(input_ids, attention_mask)
        logits, _ = self.decode(decoder_input_ids.unsqueeze(1), self.cross_states(hidden, attention_mask))
        return logits.squeeze(1)


class T5StepDecoder:
    """Incremental decoding for :func:`~recbole_genrec.model.beam_search.beam_search` (a ``StepDecoder``).

    Args:
        t5: a :class:`T5`.
        encoder_hidden: ``[B, S, d_model]`` encoder output.
        encoder_mask: ``[B, S]`` 1/True on real tokens.
    """

    def __init__(self, t5: T5, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor):
        self.t5, self.B = t5, encoder_hidden.shape[0]
        self.cross = t5.cross_states(encoder_hidden, encoder_mask)
        self.device = encoder_hidden.device
        self.self_kv: Optional[KVCache] = None  # per layer: K, V as [B, W, H, t, d_kv]

    def step(self, tokens: Optional[torch.Tensor], parent: Optional[torch.Tensor]) -> torch.Tensor:
        if tokens is None:  # the start token (0), one beam per user
            tokens = torch.zeros(self.B, 1, dtype=torch.long, device=self.device)
            self.self_kv = None
        else:
            rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None]
            self.self_kv = [(k[rows, parent], v[rows, parent]) for k, v in self.self_kv]  # reorder beams
        logits, self.self_kv = self.t5.decode(tokens.unsqueeze(-1), self.cross, self.self_kv)
        return logits.squeeze(2)  # [B, W, V]


def _init_like_transformers(stack: nn.Module, dims: T5Dims):
    """Initial weights of a stack as transformers' T5 draws them (``T5PreTrainedModel._init_weights``).

    The modules were built in transformers' order (each ``nn.Linear``/``nn.Embedding`` draws its
    default init); transformers then visits the stack's modules children-first, drawing
    ``N(0, 1)`` for every linear and embedding (its generic rule for ``initializer_factor`` 1)
    and, at each attention and feed-forward module, T5's own scaled normals over those.
    """
    d, dk, H, dff = dims.d_model, dims.d_kv, dims.num_heads, dims.d_ff

    def visit(module):
        for child in module.children():
            visit(child)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=1.0)
        elif isinstance(module, T5LayerNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, T5Attention):
            nn.init.normal_(module.q.weight, std=(d * dk) ** -0.5)
            nn.init.normal_(module.k.weight, std=d**-0.5)
            nn.init.normal_(module.v.weight, std=d**-0.5)
            nn.init.normal_(module.o.weight, std=(H * dk) ** -0.5)
            if hasattr(module, "relative_attention_bias"):
                nn.init.normal_(module.relative_attention_bias.weight, std=d**-0.5)
        elif isinstance(module, T5DenseActDense):
            nn.init.normal_(module.wi.weight, std=d**-0.5)
            nn.init.normal_(module.wo.weight, std=dff**-0.5)
        elif isinstance(module, T5DenseGatedActDense):
            nn.init.normal_(module.wi_0.weight, std=d**-0.5)
            nn.init.normal_(module.wi_1.weight, std=d**-0.5)
            nn.init.normal_(module.wo.weight, std=dff**-0.5)

    with torch.no_grad():
        visit(stack)
