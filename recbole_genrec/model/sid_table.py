"""The semantic-ID code table of one tokenizer, as a module that moves with its model.

A generative recommender reads everything about the item codes from a
:class:`SemanticIDTable`: the token id of each level's code 0 (``offsets``), every item's code
tokens (``item_tokens``), the prefix trie for constrained beam search (``trie``), and the dense
prefix ids APAO compares (``prefix_id``, ``n_prefixes``). All of them are non-persistent
buffers, so ``model.to(device)`` moves them and checkpoints do not store them (codes are data,
rebuilt from the dataset). TIGER holds one table; a model over several tokenizers holds one per
tokenizer (:func:`tables_from_dataset`).
"""

from typing import Sequence

import torch
from torch import nn

from recbole_genrec.model.apao_losses import prefix_counts, prefix_ids
from recbole_genrec.model.beam_search import PrefixTrie, level_offsets

__all__ = ["SemanticIDTable", "tables_from_dataset"]


class SemanticIDTable(nn.Module):
    """Codes of one tokenizer over RecBole's item ids.

    Args:
        item_sid: LongTensor ``[n_items, L]``, level-local codes; row 0 (padding item) is ignored.
        codebook_sizes: ``L`` ints, the size of each level's codebook.
        token_start: token id of level-0 code 0 (1: token 0 is the pad/start token).

    Attributes (buffers unless said otherwise):
        n_levels, codebook_sizes (python): ``L`` and the sizes.
        n_tokens (python): ``sum(codebook_sizes)``, the code tokens occupy
            ``[token_start, token_start + n_tokens)``.
        offsets: ``[L]`` token id of each level's code 0.
        item_tokens: ``[n_items, L]`` token ids of every item's codes; row 0 = pad tokens (0).
        prefix_id: ``[n_items, L]`` dense ids of each item's length-``t`` prefix (row 0: -1).
        n_prefixes: ``[L]`` distinct length-``t`` prefixes among the real items (APAO's N_t).
        trie (python object, tensors are buffers): :class:`PrefixTrie` over rows 1..
    """

    def __init__(self, item_sid: torch.Tensor, codebook_sizes: Sequence[int], token_start: int = 1):
        super().__init__()
        item_sid = torch.as_tensor(item_sid, dtype=torch.long).cpu()
        sizes = [int(s) for s in codebook_sizes]
        if item_sid.dim() != 2 or item_sid.shape[1] != len(sizes):
            raise ValueError(f"item_sid must be [n_items, L={len(sizes)}], got {tuple(item_sid.shape)}")
        self.codebook_sizes = sizes
        self.n_levels = len(sizes)
        self.n_tokens = sum(sizes)
        self.register_buffer("offsets", level_offsets(sizes, token_start), persistent=False)
        item_tokens = item_sid + self.offsets
        item_tokens[0] = 0  # padding item -> pad tokens
        self.register_buffer("item_tokens", item_tokens, persistent=False)
        pids = prefix_ids(item_sid)
        self.register_buffer("prefix_id", pids, persistent=False)
        self.register_buffer("n_prefixes", prefix_counts(pids), persistent=False)
        self.trie = PrefixTrie.from_item_sid(item_sid, sizes)
        for t in range(self.n_levels):
            self.register_buffer(f"trie_child_codes_{t}", self.trie.child_codes[t], persistent=False)
            self.register_buffer(f"trie_children_{t}", self.trie.children[t], persistent=False)

    @property
    def n_items(self) -> int:
        return self.item_tokens.shape[0]

    def _apply(self, fn, *args, **kwargs):
        # model.to()/cuda()/half() move the buffers; point the trie at the moved tensors
        out = super()._apply(fn, *args, **kwargs)
        self.trie.child_codes = [getattr(self, f"trie_child_codes_{t}") for t in range(self.n_levels)]
        self.trie.children = [getattr(self, f"trie_children_{t}") for t in range(self.n_levels)]
        return out

    def extra_repr(self) -> str:
        return f"n_items={self.n_items}, codebook_sizes={self.codebook_sizes}"


def tables_from_dataset(dataset, token_start: int = 1) -> nn.ModuleList:
    """One :class:`SemanticIDTable` per tokenizer of ``dataset.item_sids`` (``[T, n_items, L]``)."""
    sizes = dataset.sid_codebook_sizes
    return nn.ModuleList(SemanticIDTable(sid, sizes, token_start) for sid in torch.as_tensor(dataset.item_sids))
