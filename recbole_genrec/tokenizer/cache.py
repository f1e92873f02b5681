"""Content-hashed, atomic, self-checking array cache for embeddings and semantic IDs.

A cache entry is one ``.npz`` file holding named arrays plus two extra members:
``__meta__`` (a JSON string) and ``__sha256__`` (the checksum of everything else). Files
are written to a temporary name in the same folder and moved into place with
``os.replace``, so a reader never sees a half-written entry. A file that cannot be read
or whose checksum does not match (truncated copy, disk error, concurrent hand edit) is
reported with a warning and treated as a miss, so the caller rebuilds it.
"""

import hashlib
import json
import logging
import os
import zipfile

import numpy as np

from recbole_genrec.safe_io import atomic_write

_META = "__meta__"
_SHA = "__sha256__"


def digest(obj):
    """sha256 hex digest of a JSON-serialisable object (keys sorted; numpy arrays by content)."""

    def default(value):
        if isinstance(value, np.ndarray):
            return array_digest(value)
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            return value.item()
        return str(value)

    text = json.dumps(obj, sort_keys=True, default=default, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def array_digest(array):
    """sha256 of an array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(array.dtype).encode())
    h.update(str(array.shape).encode())
    h.update(array.tobytes())
    return h.hexdigest()


def _checksum(arrays, meta_text):
    h = hashlib.sha256(meta_text.encode("utf-8"))
    for name in sorted(arrays):
        h.update(name.encode("utf-8"))
        h.update(array_digest(arrays[name]).encode())
    return h.hexdigest()


def save_entry(path, arrays, meta):
    """Atomically write ``arrays`` (dict name -> ndarray) and ``meta`` (JSON-able dict) to ``path``."""
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    meta_text = json.dumps(meta, sort_keys=True, default=str)
    payload = {**arrays, _META: np.array(meta_text), _SHA: np.array(_checksum(arrays, meta_text))}
    atomic_write(path, lambda f: np.savez(f, **payload))


def load_entry(path, expected_key=None):
    """Return ``(arrays, meta)`` of a valid entry, or ``None`` when absent or unusable.

    A corrupt/partial file or a key mismatch logs a warning naming the file and returns
    ``None`` (the caller rebuilds and overwrites it).
    """
    if not os.path.exists(path):
        return None
    logger = logging.getLogger()
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name not in (_META, _SHA)}
            meta_text = str(data[_META])
            stored = str(data[_SHA])
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as err:
        logger.warning(f"Semantic-ID cache file [{path}] is corrupt or incomplete ({err!r}); rebuilding it.")
        return None
    if _checksum(arrays, meta_text) != stored:
        logger.warning(f"Semantic-ID cache file [{path}] fails its checksum; rebuilding it.")
        return None
    meta = json.loads(meta_text)
    if expected_key is not None and meta.get("key") != expected_key:
        logger.warning(f"Semantic-ID cache file [{path}] holds another key; rebuilding it.")
        return None
    return arrays, meta
