"""The extra disambiguating level that makes every item's semantic ID unique (spec §10)."""

import numpy as np

from recbole_genrec.errors import ConfigError


def collision_groups(codes):
    """``(inverse, counts)``: the group index of every row and the size of every group of equal rows."""
    codes = np.asarray(codes)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def collision_rate(codes):
    """(N - #unique rows) / N, the spec's definition (0.0 for an empty table)."""
    if len(codes) == 0:
        return 0.0
    _, counts = collision_groups(codes)
    return float(len(codes) - len(counts)) / len(codes)


def add_collision_level(codes, codebook_size=256, dataset_name="?"):
    """Append a 0-based counter within each group of items sharing the same code prefix.

    ``codes``: int array ``[n, L]`` (row order = item order; the counter follows it, so the
    lowest item id of a group gets 0). Returns ``[n, L + 1]`` int64 whose rows are all
    distinct. Items without a collision get 0 (TIGER's convention; the MTGRec code uses a
    1-based counter, which is equivalent for uniqueness).

    Raises ``ConfigError`` (a ``ValueError``) naming the dataset and the group size when a group has more
    items than ``codebook_size`` codes on the extra level.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = len(codes)
    if n == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64)
    inverse, counts = collision_groups(codes)
    largest = int(counts.max())
    if largest > codebook_size:
        g = int(np.argmax(counts))
        prefix = tuple(int(c) for c in codes[np.flatnonzero(inverse == g)[0]])
        raise ConfigError(
            f"Dataset [{dataset_name}]: {largest} items share the semantic-ID prefix {prefix}, "
            f"but the collision level has only {codebook_size} codes. Train the tokenizer longer, "
            f"add a level (rq_levels) or raise rq_codebook_size."
        )
    order = np.argsort(inverse, kind="stable")  # groups contiguous, item order kept inside a group
    starts = np.cumsum(counts) - counts
    suffix = np.empty(n, dtype=np.int64)
    suffix[order] = np.arange(n) - starts[inverse[order]]
    return np.concatenate([codes, suffix[:, None]], axis=1)
