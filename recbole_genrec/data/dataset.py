"""``SemanticIDDataset``: RecBole's ``SequentialDataset`` plus every item's semantic ID.

After ``__init__`` (RecBole's loading, filtering and id remapping, then the tokenizer or
its cache) the dataset exposes:

- ``item_sids``: LongTensor ``[T, item_num, L]``; T = ``sid_num_tokenizers`` (the codes of
  the last T RQ-VAE epochs of one run, oldest first), row = RecBole's internal item id
  (``field2id_token[ITEM_ID_FIELD][row]`` is the raw id), row 0 = RecBole's padding item,
  all zeros and never a real item. Rows 1.. of each tokenizer are pairwise distinct.
- ``item_sid``: ``item_sids[-1]`` (``[item_num, L]``), the primary tokenizer.
- ``sid_codebook_sizes``: list of L ints; level-l codes lie in ``[0, sizes[l])`` (models
  build token ids as ``1 + sum(sizes[:l]) + code``).
- ``sid_quality``: the tokenizer quality dict (``recbole_genrec.tokenizer.quality``).

They are plain attributes, so ``build()``/``copy()`` (``copy.copy``) carry them to the
splits. RecBole's processed-dataset pickle never carries them: :meth:`save` leaves them
out, and a dataset restored from such a pickle recomputes them on first access from our
content-hashed cache, using the config it holds. A caller that restores a pickle under
a new config calls :meth:`attach_semantic_ids` with that config.
"""

import torch
from recbole.data.dataset import SequentialDataset

from recbole_genrec.tokenizer.build import build_semantic_ids

_SID_ATTRS = ("_item_sids", "_sid_codebook_sizes", "sid_quality", "sid_info")


class SemanticIDDataset(SequentialDataset):
    def __init__(self, config):
        super().__init__(config)
        self.attach_semantic_ids()

    def attach_semantic_ids(self, config=None):
        """(Re)compute the semantic-ID attributes from ``config`` (default: ``self.config``).

        Cheap when the content-hashed cache holds the codes (no encoder or training runs).
        Returns ``self``.
        """
        if config is not None:
            self.config = config
        sids = build_semantic_ids(self.config, self)
        n_tok, n_real = len(sids.codes), self.item_num - 1
        table = torch.zeros(n_tok, self.item_num, len(sids.codebook_sizes), dtype=torch.long)
        for t, codes in enumerate(sids.codes):
            assert codes.shape[0] == n_real, (codes.shape, n_real)
            table[t, 1:] = torch.as_tensor(codes, dtype=torch.long)
        self._item_sids = table
        self._sid_codebook_sizes = list(sids.codebook_sizes)
        self.sid_quality = sids.quality
        self.sid_info = {"source": sids.source, "timings": sids.timings, "meta": sids.meta}
        return self

    def _sid(self, name):
        if self.__dict__.get(name) is None:
            self.attach_semantic_ids()
        return self.__dict__[name]

    @property
    def item_sids(self):
        """LongTensor ``[T, item_num, L]`` (see the module docstring)."""
        return self._sid("_item_sids")

    @property
    def item_sid(self):
        """LongTensor ``[item_num, L]``: the primary (last) tokenizer's table."""
        return self.item_sids[-1]

    @property
    def sid_codebook_sizes(self):
        """Codebook size of each of the L levels (the collision level included)."""
        return self._sid("_sid_codebook_sizes")

    def save(self):
        """RecBole's pickle save, without the semantic IDs (they come from our cache)."""
        kept = {name: self.__dict__.pop(name) for name in _SID_ATTRS if name in self.__dict__}
        try:
            super().save()
        finally:
            self.__dict__.update(kept)
