"""Train loaders: ``GenPASTrainDataLoader`` (RecBole's train loader fed by the GenPAS pair
sampler) and ``LengthBucketTrainDataLoader`` (RecBole's examples in length-bucketed batches).

Length bucketing (``length_bucket_batches: N``, N > 0). Models that pad a batch to its own
longest history (TIGER and its variants) pay for the longest example of every batch. On office
the mean training history is 8 items while a random batch of 256 almost always holds one of 20,
so the encoder processes 2.5x the tokens it needs. Each epoch, :func:`bucket_order` shuffles the
examples, cuts the shuffled list into chunks of ``N`` batches, sorts each chunk by history length
(stable, so equal lengths stay in random order), cuts it into batches and shuffles the order of
the batches. Every example is still seen once per epoch and batches still mix users at random;
only examples of similar length now share a batch. Both loaders honour it. 0 = off (RecBole's
plain shuffle).

``data_preparation`` builds it instead of :class:`recbole.data.dataloader.TrainDataLoader` when
``train_sampler`` is set (``LT``/``MT``/``SW``/``genpas``); validation and test loaders stay RecBole's.

How it works:

1. RecBole has already MT-augmented and split the data (the original ``inter_feat`` is gone), so
   each user's training part is rebuilt from the **train split**: the history of its first
   example followed by the targets of all its examples in order. Every interaction field
   (timestamps, ratings, ...) is rebuilt the same way and stored as flat arrays + per-user offsets
   (CSR). The rebuild is verified: every train example's list must equal the last
   ``item_length`` items before its target, else a ``ValueError`` explains why.
2. Each epoch (each ``iter()``), pairs ``(user, t, i)`` are drawn by
   :mod:`recbole_genrec.data.genpas` from ``numpy.random.default_rng([seed, epoch])``
   (``genpas_mode: sample``), or the exact preset pair set is enumerated and shuffled
   (``genpas_mode: enumerate``; ``genpas_pairs_per_epoch`` is then ignored).
3. A batch is an ``Interaction`` in RecBole's exact layout: ``USER_ID``, target ``ITEM_ID`` (and
   the target's other fields), ``<field>_list`` left-aligned with 0-padding at the end,
   ``ITEM_LIST_LENGTH`` (the last ``MAX_ITEM_LIST_LENGTH`` items of the input), then user/item
   features are joined, ``transform`` is applied and negatives are drawn for the *sampled* targets
   (``train_neg_sample_args``), exactly as in ``TrainDataLoader.collate_fn``.

Users with fewer than 2 training items have no training pair (RecBole gives them no train
example either); they keep their validation/test examples.
"""

from logging import getLogger

import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.dataloader.abstract_dataloader import NegSampleDataLoader
from recbole.data.interaction import Interaction
from recbole.utils import set_color

from recbole_genrec.errors import ConfigError
from recbole_genrec.data.genpas import (
    GenPASSampler,
    Sequences,
    draw_epoch_pairs,
    enumerate_pairs,
    epoch_rng,
    format_exponent,
    group_positions,
    parse_pairs_per_epoch,
    sampler_spec_from_config,
)


def bucket_order(lengths, batch_size, chunk_batches, rng):
    """An epoch's example order whose consecutive ``batch_size`` slices are length-bucketed batches.

    ``lengths``: ``[n]`` history lengths; ``rng``: a numpy Generator. Returns a permutation of
    ``range(n)``: full batches in random order, then the remainder (``n % batch_size`` examples)
    last, so a loader that cuts the order into consecutive ``batch_size`` slices gets exactly
    these batches.
    """
    lengths = np.asarray(lengths)
    n = lengths.shape[0]
    perm = rng.permutation(n)
    chunk_id = np.arange(n) // (batch_size * max(int(chunk_batches), 1))
    order = perm[np.lexsort((lengths[perm], chunk_id))]  # by chunk, then length; stable
    n_full = n // batch_size
    batches = order[: n_full * batch_size].reshape(n_full, batch_size)[rng.permutation(n_full)]
    return np.concatenate([batches.ravel(), order[n_full * batch_size:]])


def length_bucket_batches(config):
    """``length_bucket_batches`` from the config; a clear error when negative."""
    value = int(config["length_bucket_batches"])
    if value < 0:
        raise ConfigError(f"length_bucket_batches must be >= 0 (0 = off), got {value}.")
    return value


class EpochDrawnLoader:
    """Mixin for a train loader whose epoch is ``self.draw(epoch)``, redrawn at every ``iter()``.

    The draw is deterministic in ``(seed, epoch)``, so :meth:`set_epoch` replays an epoch (e.g.
    after resuming). ``drawn()`` is the current epoch's draw (drawn lazily if ``collate_fn`` is
    called before any ``iter()``).
    """

    epoch = 0
    _drawn = None

    def set_epoch(self, epoch):
        """Make the next ``iter()`` draw epoch ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self):
        self._drawn = self.draw(self.epoch)
        self.epoch += 1
        return super().__iter__()

    def drawn(self):
        if self._drawn is None:
            self._drawn = self.draw(self.epoch)
        return self._drawn


class LengthBucketTrainDataLoader(EpochDrawnLoader, TrainDataLoader):
    """RecBole's ``TrainDataLoader`` (same constructor) whose epochs come in length-bucketed batches
    (module docstring): each epoch's order is :func:`bucket_order` drawn from :func:`epoch_rng`."""

    def __init__(self, config, dataset, sampler, shuffle=False):
        self.chunk_batches = length_bucket_batches(config)
        if self.chunk_batches == 0:
            raise ConfigError("LengthBucketTrainDataLoader needs length_bucket_batches > 0.")
        self.seed = config["seed"]
        super().__init__(config, dataset, sampler, shuffle=False)  # the order is ours, not torch's
        self.shuffle = bool(shuffle)
        self._lengths = dataset.inter_feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy()

    def draw(self, epoch):
        if not self.shuffle:
            return np.arange(self.sample_size)
        return bucket_order(self._lengths, self.step, self.chunk_batches, epoch_rng(self.seed, epoch))

    def collate_fn(self, index):
        return super().collate_fn(self.drawn()[np.asarray(index, dtype=np.int64)])


class TrainSequences:
    """Training parts rebuilt from a RecBole sequential train split (see module doc).

    Attributes:
        seqs (Sequences): item CSR (rows = users that have a train example).
        fields (dict[str, torch.Tensor]): flat per-position values of every interaction field
            that RecBole turned into a ``<field>_list`` (the item field included).
        list_fields (dict[str, str]): field -> its list field.
    """

    def __init__(self, dataset):
        inter = dataset.inter_feat
        uid_field, iid_field = dataset.uid_field, dataset.iid_field
        len_field = dataset.item_list_length_field
        suffix = dataset.config["LIST_SUFFIX"]
        item_list_field = iid_field + suffix
        if item_list_field not in inter or len_field not in inter:
            raise ConfigError(
                f"GenPAS needs a sequential train split with '{item_list_field}' and '{len_field}' "
                "(a RecBole SequentialDataset). Fix: use a sequential model (MODEL_TYPE SEQUENTIAL)."
            )
        self.uid_field, self.iid_field, self.len_field = uid_field, iid_field, len_field
        self.list_fields = {
            f: f + suffix
            for f in inter.columns
            if f not in (uid_field, len_field) and not f.endswith(suffix) and f + suffix in inter
        }
        self.columns = list(inter.columns)
        self.max_len = inter[item_list_field].shape[1]

        uid = inter[uid_field].numpy()
        if uid.size == 0:
            raise ConfigError(
                "GenPAS: the train split is empty (every user has < 2 training items). "
                "Fix: check the dataset filters / split."
            )
        order = np.argsort(uid, kind="stable")  # keeps RecBole's chronological order per user
        users, starts, counts = np.unique(uid[order], return_index=True, return_counts=True)
        first = order[starts]
        hist_len = inter[len_field].numpy()[first].astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(hist_len + counts)]).astype(np.int64)

        # positions of the first example's history, and of every example's target
        hist_rows = np.repeat(first, hist_len)
        hist_cols = group_positions(hist_len)[1]
        hist_pos = np.repeat(offsets[:-1], hist_len) + hist_cols
        tgt_pos = np.repeat(offsets[:-1] + hist_len, counts) + group_positions(counts)[1]

        total = int(offsets[-1])
        self.fields = {}
        for field, list_field in self.list_fields.items():
            lst = inter[list_field]
            flat = torch.zeros((total,) + tuple(lst.shape[2:]), dtype=lst.dtype)
            flat[torch.from_numpy(hist_pos)] = lst[torch.from_numpy(hist_rows), torch.from_numpy(hist_cols)]
            flat[torch.from_numpy(tgt_pos)] = inter[field][torch.from_numpy(order)].to(lst.dtype)
            self.fields[field] = flat
        self.target_dtypes = {f: inter[f].dtype for f in self.list_fields}
        self.seqs = Sequences(self.fields[iid_field].numpy().astype(np.int64), offsets, users.astype(np.int64))
        self._verify(inter, order, tgt_pos, item_list_field)

    def _verify(self, inter, order, tgt_pos, item_list_field):
        """Every train example's list must be the last ``len`` items before its target."""
        lst = inter[item_list_field].numpy()[order]
        length = inter[self.len_field].numpy()[order]
        cols = np.arange(lst.shape[1])
        pos = tgt_pos[:, None] - length[:, None] + cols[None, :]
        mask = cols[None, :] < length[:, None]
        expect = np.where(mask, self.seqs.items[np.where(mask, pos, 0)], 0)
        if not np.array_equal(np.where(mask, lst, 0), expect):
            raise ConfigError(
                "GenPAS could not rebuild the users' training sequences from the train split: its "
                f"'{item_list_field}' rows are not RecBole's prefix augmentation of one chronological "
                "sequence per user (e.g. benchmark_filename splits or a custom augmentation). "
                "Fix: use eval_args split LS/RS with group_by user and order TO, or train_sampler: default."
            )

    def build_batch(self, rows, t, start):
        """``Interaction`` for pairs ``s_start..s_{t-1} -> s_t`` (1-based; ``t - start <= L``)."""
        rows = np.asarray(rows, dtype=np.int64)
        off = self.seqs.offsets[rows]
        length = np.asarray(t, dtype=np.int64) - np.asarray(start, dtype=np.int64)
        cols = np.arange(self.max_len)
        mask = cols[None, :] < length[:, None]
        pos = torch.from_numpy(np.where(mask, off[:, None] + start[:, None] - 1 + cols[None, :], 0))
        tmask = torch.from_numpy(mask)
        tgt = torch.from_numpy(off + t - 1)
        data = {}
        for col in self.columns:
            if col == self.uid_field:
                data[col] = torch.from_numpy(self.seqs.user_ids[rows])
            elif col == self.len_field:
                data[col] = torch.from_numpy(length)
            elif col in self.list_fields:
                data[col] = self.fields[col][tgt].to(self.target_dtypes[col])
            else:
                base = next((f for f, lf in self.list_fields.items() if lf == col), None)
                if base is None:
                    continue  # a column RecBole's augmentation would not produce
                vals = self.fields[base][pos]
                m = tmask.reshape(tmask.shape + (1,) * (vals.dim() - 2))
                data[col] = torch.where(m, vals, torch.zeros((), dtype=vals.dtype))
        return Interaction(data)


class GenPASTrainDataLoader(EpochDrawnLoader, TrainDataLoader):
    """Drop-in ``TrainDataLoader`` whose examples are GenPAS pairs, redrawn every epoch.

    Same constructor as :class:`recbole.data.dataloader.TrainDataLoader`. ``len(loader)`` is the
    number of batches of one epoch (pairs per epoch / ``train_batch_size``).
    """

    def __init__(self, config, dataset, sampler, shuffle=False):
        self.spec = sampler_spec_from_config(config)
        if self.spec is None:
            raise ConfigError(
                "GenPASTrainDataLoader needs train_sampler LT, MT, SW or genpas; with "
                "train_sampler: default use RecBole's TrainDataLoader."
            )
        self.chunk_batches = length_bucket_batches(config)
        self.sequences = TrainSequences(dataset)
        seqs = self.sequences.seqs
        self.max_len = self.sequences.max_len
        self.seed = config["seed"]
        self._shuffle_pairs = bool(shuffle)
        self._sampler_math = None
        if self.spec.mode == "enumerate":
            self.n_pairs = int(enumerate_pairs(seqs, self.spec.preset())[0].size)
        else:
            self.n_pairs = parse_pairs_per_epoch(
                config["genpas_pairs_per_epoch"], seqs.n_mt_pairs(), seqs.n_pair_users()
            )
            self._sampler_math = GenPASSampler(
                seqs, *self.spec.theta, max_len=self.max_len, truncation=self.spec.truncation
            )
        # TrainDataLoader.__init__ would set sample_size = len(dataset); ours is the pair count.
        self.logger = getLogger()
        self._set_neg_sample_args(config, dataset, config["MODEL_INPUT_TYPE"], config["train_neg_sample_args"])
        self.sample_size = self.n_pairs
        # the epoch's order comes from the (seed, epoch) numpy Generator, not torch's shuffle
        NegSampleDataLoader.__init__(self, config, dataset, sampler, shuffle=False)
        self.shuffle = bool(shuffle)
        a, b, g = map(format_exponent, self.spec.theta)
        self.logger.info(
            set_color("[GenPAS]: ", "pink")
            + f"sampler={self.spec.name} (alpha, beta, gamma)=({a}, {b}, {g}) mode={self.spec.mode} "
            f"truncation={self.spec.truncation} pairs/epoch={self.n_pairs} "
            f"users with pairs={seqs.n_pair_users()}"
        )

    def draw(self, epoch):
        """The ``(rows, t, start)`` pairs of ``epoch`` (deterministic in ``(seed, epoch)``)."""
        rng = epoch_rng(self.seed, epoch)
        rows, t, i = draw_epoch_pairs(
            self.sequences.seqs, self.spec, self.max_len, self.n_pairs, rng,
            shuffle=self._shuffle_pairs, sampler=self._sampler_math,
        )
        start = np.maximum(i, t - self.max_len)  # keep the last L items of the input
        if self.chunk_batches and self._shuffle_pairs:
            order = bucket_order(t - start, self.step, self.chunk_batches, rng)
            rows, t, start = rows[order], t[order], start[order]
        return rows, t, start

    def collate_fn(self, index):
        index = np.asarray(index, dtype=np.int64)
        rows, t, start = (a[index] for a in self.drawn())
        data = self._dataset.join(self.sequences.build_batch(rows, t, start))
        return self._neg_sampling(self.transform(self._dataset, data))
