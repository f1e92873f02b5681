"""Item text -> embeddings -> semantic IDs, with a two-stage content-hashed cache.

Plain arrays in, codes out; nothing of RecBole: :class:`ItemCatalog` (the real items' raw
ids, texts and which of them occur in training) and the ``sid_*``/``rq_*`` settings (the keys
of ``properties/sid.yaml``; ``recbole_genrec.data.dataset`` reads them from the RecBole
config and builds the catalogue from a RecBole dataset).

Stage 1 (embeddings): key = sha256(item texts in catalogue order, encoder identity,
``sid_max_text_length``). Stage 2 (codes): key = sha256(stage-1 key, method and its
hyperparameters, ``sid_pca_dim``, ``seed``, the training-item mask, ``sid_num_tokenizers``).
A change of any input therefore gives a new file; nothing is invalidated in place. Files
live in the ``cache_dir`` given by the caller.

Decisions where the spec is silent:
- With ``sid_num_tokenizers = 1`` the tokenizer is the **last** epoch's (not the spec's
  best-loss checkpoint): then T = 1 and T = N agree on what "last" means, and runs with
  different N share their final table.
- The codes before the collision level are cached; the collision level is recomputed on
  load (cheap and deterministic), so the quality report always has both.
- ``sid_file`` codes get the extra level only if they collide; its codebook size is then
  ``rq_codebook_size``. A file level's size is ``max(max code + 1, rq_codebook_size)``.
"""

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from recbole_genrec.checks import check_identical_texts
from recbole_genrec.errors import ConfigError
from recbole_genrec.tokenizer.cache import array_digest, digest, load_entry, save_entry
from recbole_genrec.tokenizer.collision import add_collision_level, collision_rate
from recbole_genrec.tokenizer.quality import id_change_rate, tokenizer_quality
from recbole_genrec.tokenizer.sid_file import check_code_limit, load_sid_file, resolve_sid_file

CACHE_VERSION = 1

RQVAE_KEYS = (
    "hidden_sizes", "code_dim", "levels", "codebook_size", "vq_type", "beta", "ema_decay", "ema_eps",
    "detach_residual", "dropout", "kmeans_init", "kmeans_iters", "epochs", "batch_size", "optimizer",
    "lr", "weight_decay",
)  # fmt: skip
RKMEANS_KEYS = ("levels", "codebook_size", "kmeans_iters")


@dataclass
class ItemCatalog:
    """What the tokenizer needs to know of a dataset's real items (row k = the k-th real item)."""

    name: str  # the dataset's name (messages, and the collision level's tie-break seed)
    item_ids: list  # raw item ids (str)
    train_mask: np.ndarray  # bool [n]: the item occurs in some user's training part
    texts: list = None  # item texts (None when codes come from a sid_file)
    text_info: dict = field(default_factory=dict)  # where the texts came from ({"fields", "n_fallback", "file"})
    data_path: str = None  # folder a relative sid_file is also looked for in


@dataclass
class SemanticIDs:
    """Codes of the real items (internal ids 1..n_items-1, no padding row)."""

    codes: list  # T arrays [n_real_items, L] int64, oldest tokenizer first; the last is primary
    codebook_sizes: list  # L ints
    raw_codes: list  # T arrays before the collision level (or the file's codes)
    quality: dict = field(default_factory=dict)  # tokenizer_quality of the primary + id changes
    timings: dict = field(default_factory=dict)  # seconds per stage of this call
    source: str = ""  # "built", "cache" or "sid_file"
    meta: dict = field(default_factory=dict)  # what the cache entry stores (build timings, history)


def rq_params(settings):
    """The tokenizer hyperparameters (``rq_*`` without the prefix, plus ``dead_code_restart``)."""
    p = {key: settings["rq_" + key] for key in RQVAE_KEYS}
    p["dead_code_restart"] = bool(settings["dead_code_restart"])
    if p["dead_code_restart"]:  # (only then: the cache keys of builds without restarts stay as they were)
        p["dead_code_restart_until"] = float(settings["dead_code_restart_until"])
    return p


def _finish(raw_codes, codebook_sizes, collision_size, dataset_name, force_level):
    """Append the collision level (always when ``force_level``, else only if needed)."""
    if force_level or any(collision_rate(c) > 0 for c in raw_codes):
        codes = [add_collision_level(c, collision_size, dataset_name) for c in raw_codes]
        return codes, list(codebook_sizes) + [int(collision_size)]
    return [np.asarray(c, dtype=np.int64) for c in raw_codes], list(codebook_sizes)


def _quality(sids):
    q = tokenizer_quality(sids.raw_codes[-1], sids.codebook_sizes[: sids.raw_codes[-1].shape[1]], sids.codes[-1])
    if len(sids.codes) > 1:
        q["id_change_vs_previous"] = [id_change_rate(a, b) for a, b in zip(sids.codes[:-1], sids.codes[1:])]
        q["id_change_first_vs_last"] = id_change_rate(sids.codes[0], sids.codes[-1])
    return q


def _from_sid_file(catalog, settings):
    t0 = time.time()
    path = resolve_sid_file(settings["sid_file"], catalog.data_path)
    if int(settings["sid_num_tokenizers"]) > 1:
        raise ConfigError("sid_num_tokenizers > 1 needs sid_method: rqvae; a sid_file holds one tokenizer.")
    raw = load_sid_file(path, catalog.item_ids, catalog.name)
    size = int(settings["rq_codebook_size"])
    check_code_limit(raw, catalog.item_ids, max(size, len(raw)), path)
    sizes = [max(int(raw[:, level].max()) + 1, size) for level in range(raw.shape[1])]
    codes, sizes = _finish([raw], sizes, size, catalog.name, force_level=False)
    sids = SemanticIDs(codes, sizes, [raw], source="sid_file", meta={"sid_file": path})
    sids.timings = {"load_sid_file": time.time() - t0}
    sids.quality = _quality(sids)
    return sids


def embedding_key(texts, settings):
    """``(key, encoder identity)`` of the item embeddings of ``texts``, without encoding."""
    from recbole_genrec.tokenizer import text

    _, identity = text.resolve_encoder(settings["sid_encoder"])
    key = digest({"v": CACHE_VERSION, "texts": texts, "encoder": identity, "max_length": int(settings["sid_max_text_length"])})
    return key, identity


def item_embeddings(texts, settings, cache_dir, device="cpu", show_progress=True):
    """``(embeddings [n, d] float32, key, cached?)`` of ``texts``, from the cache or the encoder."""
    from recbole_genrec.tokenizer import text

    key, identity = embedding_key(texts, settings)
    path = os.path.join(cache_dir, f"emb-{key[:20]}.npz")
    entry = load_entry(path, key)
    if entry is not None:
        return entry[0]["embeddings"], key, True
    encoder = settings["sid_encoder"]
    logging.getLogger().info(f"Semantic IDs: encoding {len(texts)} item texts with [{encoder}] on {device}.")
    emb = text.encode_texts(texts, encoder, device=device, batch_size=int(settings["sid_encoder_batch_size"]),
                            max_length=int(settings["sid_max_text_length"]), show_progress=show_progress)
    save_entry(path, {"embeddings": emb}, {"key": key, "encoder": identity})
    return emb, key, False


def pca_whiten(emb, dim, seed=0):
    """sklearn ``PCA(whiten=True)`` to ``dim`` components (capped by the data's rank); ``dim <= 0`` = identity."""
    if dim is None or int(dim) <= 0:
        return np.asarray(emb, dtype=np.float32)
    from sklearn.decomposition import PCA

    dim = min(int(dim), emb.shape[0], emb.shape[1])
    return PCA(n_components=dim, whiten=True, random_state=seed).fit_transform(emb).astype(np.float32)


def build_semantic_ids(catalog, settings, cache_dir, seed, device="cpu", show_progress=True):
    """The semantic IDs of the items of ``catalog`` (:class:`ItemCatalog`).

    ``settings``: the ``sid_*``/``rq_*`` keys (``properties/sid.yaml``); ``sid_file`` set: codes
    from the file (validated). Else text -> embeddings (cache stage 1) -> PCA -> ``sid_method``
    -> collision level (cache stage 2), cached under ``cache_dir``. Returns :class:`SemanticIDs`.
    """
    logger = logging.getLogger()
    if settings["sid_file"]:
        sids = _from_sid_file(catalog, settings)
        logger.info(f"Semantic IDs from [{sids.meta['sid_file']}]: codebook sizes {sids.codebook_sizes}.")
        return sids

    timings = {}
    t0 = time.time()
    emb_key, _ = embedding_key(catalog.texts, settings)  # item text -> key; encoding only on a cache miss
    check_identical_texts(catalog.texts, catalog.item_ids, int(settings["rq_codebook_size"]), catalog.name)
    timings["item_text"] = time.time() - t0

    method = settings["sid_method"]
    n_tok = int(settings["sid_num_tokenizers"])
    if method == "rqvae":
        params = rq_params(settings)
    elif method == "rkmeans":
        params = {key: settings["rq_" + key] for key in RKMEANS_KEYS}
        if n_tok > 1:
            raise ConfigError("sid_num_tokenizers > 1 needs sid_method: rqvae (checkpoints of one run).")
    else:
        raise ConfigError(f"sid_method must be 'rqvae' or 'rkmeans', got {method!r}.")
    train_mask = np.asarray(catalog.train_mask, dtype=bool)
    pca_dim = int(settings["sid_pca_dim"])
    key = digest({"v": CACHE_VERSION, "emb": emb_key, "method": method, "params": params, "pca_dim": pca_dim,
                  "seed": int(seed), "train_mask": array_digest(train_mask), "num_tokenizers": n_tok})
    path = os.path.join(cache_dir, f"sid-{method}-{key[:20]}.npz")
    levels, size = int(params["levels"]), int(params["codebook_size"])

    entry = load_entry(path, key)
    if entry is not None:
        arrays, meta = entry
        raw = list(arrays["raw_codes"])
        source = "cache"
    else:
        t = time.time()
        emb, _, cached = item_embeddings(catalog.texts, settings, cache_dir, device, show_progress)
        timings["embeddings_cached" if cached else "embeddings"] = time.time() - t
        t = time.time()
        x = pca_whiten(emb, pca_dim, seed)
        timings["pca"] = time.time() - t
        train_idx = np.flatnonzero(train_mask)
        t = time.time()
        if method == "rqvae":
            from recbole_genrec.tokenizer.rqvae import train_rqvae

            raw, history = train_rqvae(x, train_idx, params, seed=seed, device=device, keep_last=n_tok, show_progress=show_progress)
        else:
            from recbole_genrec.tokenizer.rkmeans import residual_kmeans

            raw, history = [residual_kmeans(x, train_idx, levels, size, seed, int(params["kmeans_iters"]))[0]], {}
        timings["fit" if method == "rkmeans" else "fit_rqvae"] = time.time() - t
        meta = {
            "key": key,
            "method": method,
            "params": params,
            "seed": int(seed),
            "n_train_items": int(train_mask.sum()),
            "text_fields": catalog.text_info.get("fields"),
            "n_text_fallback": catalog.text_info.get("n_fallback"),
            "build_timings": dict(timings),
            "history": history,
        }
        save_entry(path, {"raw_codes": np.stack(raw)}, meta)
        source = "built"
    t = time.time()
    codes, sizes = _finish(raw, [size] * levels, size, catalog.name, force_level=True)
    timings["collision_level"] = time.time() - t
    sids = SemanticIDs(codes, sizes, raw, timings=timings, source=source, meta=meta)
    q = sids.quality = _quality(sids)
    logger.info(
        f"Semantic IDs ({method}, {source}, [{path}]): {len(codes)} tokenizer(s), codebook sizes {sizes}; "
        f"collision rate {q['collision_rate_before']:.4f} -> {q['collision_rate_after']:.4f}, "
        f"max group {q['max_group_size']}, level usage {[lv['used'] for lv in q['levels']]}."
    )
    return sids
