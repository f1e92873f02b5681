"""Precomputed semantic IDs from a JSON file (``sid_file``).

Format (as ``../shared/data/*/*.sid-*.json``)::

    {"0": ["<a_32>", "<b_18>", "<c_83>", "<d_135>"], "1": [...], ...}

Keys are the dataset's raw item ids (the tokens of the ``item_id`` column); the value is
one token per level, ``<x_N>`` where the letter is the level (``a`` = level 0, ``b`` =
level 1, ...) and ``N >= 0`` the code. Keys of items the dataset does not contain (for
example items RecBole filtered out) are ignored.
"""

import json
import os
import re

import numpy as np

from recbole_genrec.errors import ConfigError

_TOKEN = re.compile(r"^<([a-z])_(\d+)>$")


def resolve_sid_file(path, data_path=None):
    """``path`` if it exists, else ``data_path/path`` if that exists; else FileNotFoundError."""
    candidates = [path]
    if data_path and not os.path.isabs(path):
        candidates.append(os.path.join(data_path, path))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise ConfigError(
        f"sid_file [{path}] not found (looked at: {', '.join(candidates)}). "
        f"Set sid_file to an existing JSON of item id -> code tokens."
    )


def load_sid_file(path, item_tokens, dataset_name="?"):
    """Codes ``[len(item_tokens), L]`` (int64) for the given raw item ids, in their order.

    Raises ``ConfigError`` (a ``ValueError``) naming the file and the offending item when the file is not a
    JSON object of token lists, misses a dataset item, has IDs of unequal length, or has a
    token that is malformed or whose level letter does not match its position.
    """
    with open(path, "r", encoding="utf-8") as f:
        try:
            table = json.load(f)
        except json.JSONDecodeError as err:
            raise ConfigError(f"sid_file [{path}] is not valid JSON: {err}") from err
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"sid_file [{path}] must be a non-empty JSON object {{item id: [code tokens]}}.")
    missing = [tok for tok in item_tokens if tok not in table]
    if missing:
        raise ConfigError(
            f"sid_file [{path}] has no semantic ID for {len(missing)} of the {len(item_tokens)} items of "
            f"dataset [{dataset_name}], e.g. item {missing[0]!r}"
            + (f" (also {missing[1:4]})" if len(missing) > 1 else "")
            + ". Every item must be covered; its keys must be the dataset's raw item ids."
        )
    first = table[item_tokens[0]] if item_tokens else next(iter(table.values()))
    if not isinstance(first, list) or not first:
        raise ConfigError(f"sid_file [{path}]: item {item_tokens[0]!r} has no list of code tokens.")
    n_levels = len(first)
    codes = np.empty((len(item_tokens), n_levels), dtype=np.int64)
    for row, tok in enumerate(item_tokens):
        sid = table[tok]
        if not isinstance(sid, list) or len(sid) != n_levels:
            raise ConfigError(
                f"sid_file [{path}]: item {tok!r} has {len(sid) if isinstance(sid, list) else sid!r} "
                f"code tokens, but item {item_tokens[0]!r} has {n_levels}; all IDs must have equal length."
            )
        for level, code_token in enumerate(sid):
            match = _TOKEN.match(code_token) if isinstance(code_token, str) else None
            expected = chr(ord("a") + level)
            if match is None or match.group(1) != expected:
                raise ConfigError(
                    f"sid_file [{path}]: item {tok!r} has token {code_token!r} at level {level}; "
                    f"expected '<{expected}_N>' (level letters a, b, c, ... in order, N >= 0)."
                )
            codes[row, level] = int(match.group(2))
    return codes


def check_code_limit(codes, item_tokens, limit, path):
    """``ConfigError`` when a code is ``>= limit``, before any table of that size is allocated.

    A level's vocabulary is its largest code + 1 tokens, so one stray ``<a_100000000>`` would
    make a 100M-token embedding. The caller passes ``max(rq_codebook_size, number of items)``:
    no level needs more distinct codes than there are items.
    """
    codes = np.asarray(codes)
    if codes.size == 0 or int(codes.max()) < limit:
        return
    row, level = (int(i) for i in np.unravel_index(int(np.argmax(codes)), codes.shape))
    raise ConfigError(
        f"sid_file [{path}]: item {item_tokens[row]!r} has code {int(codes[row, level])} at level {level}; codes "
        f"must be < {limit} (the larger of rq_codebook_size and the number of items), since a level's vocabulary "
        "is its largest code + 1 tokens. Fix: number each level's codes 0..K-1."
    )
