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
splits. They never come from a pickle: RecBole's processed-dataset caches are refused
(:mod:`recbole_genrec.data.no_pickle`), and the codes come from the content-hashed cache.
"""

import dataclasses
import logging
import os

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

from recbole_genrec.data.genpas import group_positions
from recbole_genrec.defaults import package_defaults
from recbole_genrec.errors import ConfigError
from recbole_genrec.tokenizer.build import ItemCatalog, build_semantic_ids
from recbole_genrec.tokenizer.quality import id_change_rate
from recbole_genrec.tokenizer.text import item_texts

def tokenizer_settings(config):
    """The tokenizer's settings: every key of ``properties/sid.yaml``, read from ``config``."""
    return {key: config[key] for key in package_defaults("sid")}


def sid_cache_dir(config):
    """``sid_cache_dir/<dataset>`` (default ``<checkpoint_dir>/semantic_ids/<dataset>``)."""
    root = config["sid_cache_dir"] or os.path.join(config["checkpoint_dir"], "semantic_ids")
    return os.path.join(root, str(config["dataset"]))


def _column(inter, field):
    """A column of ``inter_feat`` as numpy (a DataFrame before ``build()``, an Interaction after)."""
    values = inter[field]
    return values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)


def training_item_mask(config, dataset):
    """bool ``[item_num]``: items occurring in some user's training part (row 0 False).

    ``sid_train_items: train`` follows RecBole's split rule on the loaded interactions: with
    leave-one-out (``eval_args.split = {LS: valid_and_test}``) the items of each user's
    interactions except the last two (one for ``test_only``); for ``RS`` the first ratio share of
    each user's time-ordered interactions; otherwise (or ``all``) every item (logged).
    """
    mask = np.zeros(dataset.item_num, dtype=bool)
    inter = dataset.inter_feat
    iid = _column(inter, dataset.iid_field)
    split = (config["eval_args"] or {}).get("split") or {}
    mode = config["sid_train_items"]
    if mode not in ("train", "all"):
        raise ConfigError(f"sid_train_items must be 'train' or 'all', got {mode!r}.")
    uid_field, time_field = dataset.uid_field, dataset.time_field
    if mode == "all" or uid_field is None or not ("LS" in split or "RS" in split):
        if mode != "all":
            logging.getLogger().info("Semantic IDs: no per-user split to follow; fitting the tokenizer on all items.")
    else:
        uid = _column(inter, uid_field)
        order_key = _column(inter, time_field) if time_field in inter.columns else np.arange(len(uid))
        order = np.lexsort((np.arange(len(uid)), order_key, uid))  # by user, then time, then file order
        lengths = np.unique(uid[order], return_counts=True)[1]  # per user, in the sorted order
        position = group_positions(lengths)[1]
        length = np.repeat(lengths, lengths)
        if "LS" in split:
            hold = 1 if split["LS"] == "test_only" else 2
            keep = position < length - hold
        else:
            ratio = np.asarray(split["RS"], dtype=float)
            keep = position < np.floor(length * ratio[0] / ratio.sum())
        mask[iid[order][keep]] = True
    if not mask[1:].any():  # all items, or a split that leaves no training item: fit on every item
        mask[np.unique(iid)] = True
    mask[0] = False
    return mask


def independent_tokenizers(runs):
    """One tokenizer per separate RQ-VAE run (``sid_independent_runs``), as one :class:`SemanticIDs`."""
    last = runs[-1]
    quality = dict(last.quality)
    quality["id_change_vs_previous"] = [id_change_rate(a.codes[0], b.codes[0]) for a, b in zip(runs[:-1], runs[1:])]
    quality["id_change_first_vs_last"] = id_change_rate(runs[0].codes[0], last.codes[0])
    return dataclasses.replace(
        last,
        codes=[r.codes[0] for r in runs],
        raw_codes=[r.raw_codes[0] for r in runs],
        quality=quality,
        meta=dict(last.meta, independent_runs=len(runs)),
    )


def item_catalog(config, dataset):
    """The tokenizer's view of ``dataset``: raw ids, training mask and (unless ``sid_file``) texts."""
    item_ids = list(dataset.field2id_token[config["ITEM_ID_FIELD"]][1:])
    catalog = ItemCatalog(
        dataset.dataset_name, item_ids, training_item_mask(config, dataset)[1:], data_path=dataset.dataset_path
    )
    if not config["sid_file"]:
        catalog.texts, catalog.text_info = item_texts(
            os.path.join(dataset.dataset_path, f"{dataset.dataset_name}.item"),
            item_ids,
            config["ITEM_ID_FIELD"],
            config["sid_text_fields"],
            config["sid_text_template"],
            sep=config["field_separator"] or "\t",
            encoding=config["encoding"] or "utf-8",
            dataset_name=dataset.dataset_name,
        )
    return catalog


class SemanticIDDataset(SequentialDataset):
    def __init__(self, config):
        super().__init__(config)
        settings, catalog = tokenizer_settings(config), item_catalog(config, self)
        n_runs = int(settings["sid_num_tokenizers"]) if settings["sid_independent_runs"] else 1
        runs = [
            build_semantic_ids(
                catalog,
                dict(settings, sid_num_tokenizers=1) if n_runs > 1 else settings,
                sid_cache_dir(config),
                seed=config["seed"] + k,
                device=config["device"] or "cpu",
                show_progress=bool(config["show_progress"]),
            )
            for k in reversed(range(n_runs))  # the last (primary) tokenizer is the run with ``seed``
        ]
        sids = runs[-1] if n_runs == 1 else independent_tokenizers(runs)
        self.item_sids = torch.zeros(len(sids.codes), self.item_num, len(sids.codebook_sizes), dtype=torch.long)
        for t, codes in enumerate(sids.codes):
            self.item_sids[t, 1:] = torch.as_tensor(codes, dtype=torch.long)  # row 0: the padding item
        self.sid_codebook_sizes = list(sids.codebook_sizes)
        self.sid_quality = sids.quality
        self.sid_info = {"source": sids.source, "timings": sids.timings, "meta": sids.meta}

    @property
    def item_sid(self):
        """LongTensor ``[item_num, L]``: the primary (last) tokenizer's table."""
        return self.item_sids[-1]
