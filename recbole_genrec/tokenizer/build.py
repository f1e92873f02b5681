"""Item text -> embeddings -> semantic IDs, with a two-stage content-hashed cache.

Stage 1 (embeddings): key = sha256(item texts in internal-id order, encoder identity,
``sid_max_text_length``). Stage 2 (codes): key = sha256(stage-1 key, method and its
hyperparameters, ``sid_pca_dim``, ``seed``, the training-item mask, ``sid_num_tokenizers``).
A change of any input therefore gives a new file; nothing is invalidated in place. Files
live in ``sid_cache_dir/<dataset>/`` (default ``<checkpoint_dir>/semantic_ids``).

Decisions where the spec is silent:
- With ``sid_num_tokenizers = 1`` the tokenizer is the **last** epoch's (not the spec's
  best-loss checkpoint): then T = 1 and T = N agree on what "last" means, and runs with
  different N share their final table.
- The codes before the collision level are cached; the collision level is recomputed on
  load (cheap and deterministic), so the quality report always has both.
- ``sid_file`` codes get the extra level only if they collide; its codebook size is then
  ``rq_codebook_size``. A file level's size is ``max(max code + 1, rq_codebook_size)``.
- Training items (``sid_train_items: train``): with RecBole's leave-one-out split
  (``eval_args.split = {LS: valid_and_test}``) the items of each user's interactions except
  the last two (one for ``test_only``); for ``RS`` the first ratio share of each user's
  time-ordered interactions; otherwise all items (logged).
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
from recbole_genrec.utils import config_value

CACHE_VERSION = 1

RQVAE_KEYS = (
    "hidden_sizes", "code_dim", "levels", "codebook_size", "vq_type", "beta", "ema_decay", "ema_eps",
    "detach_residual", "dropout", "kmeans_init", "kmeans_iters", "epochs", "batch_size", "optimizer",
    "lr", "weight_decay",
)  # fmt: skip
RKMEANS_KEYS = ("levels", "codebook_size", "kmeans_iters")


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


def rq_params(config):
    """The tokenizer hyperparameters from the config (``rq_*`` without the prefix)."""
    p = {key: config_value(config, "rq_" + key) for key in RQVAE_KEYS}
    p["dead_code_restart"] = bool(config_value(config, "dead_code_restart", False))
    missing = [k for k, v in p.items() if v is None]
    if missing:
        raise ConfigError(
            f"Semantic-ID config keys {['rq_' + k for k in missing]} are unset; recbole_genrec/properties/sid.yaml "
            f"holds their defaults (use recbole_genrec.config.Config)."
        )
    return p


def cache_dir(config):
    root = config_value(config, "sid_cache_dir") or os.path.join(config_value(config, "checkpoint_dir", "saved"), "semantic_ids")
    return os.path.join(root, str(config["dataset"]))


def _column(inter, field):
    """A column of ``inter_feat`` as numpy (a DataFrame before ``build()``, an Interaction after)."""
    values = inter[field]
    return values.numpy() if hasattr(values, "numpy") else np.asarray(values)


def training_item_mask(config, dataset):
    """bool ``[item_num]``: items occurring in some user's training part (row 0 False)."""
    n_items = dataset.item_num
    mask = np.zeros(n_items, dtype=bool)
    inter = dataset.inter_feat
    iid = _column(inter, dataset.iid_field)
    split = (config_value(config, "eval_args", {}) or {}).get("split") or {}
    mode = config_value(config, "sid_train_items", "train")
    if mode not in ("train", "all"):
        raise ConfigError(f"sid_train_items must be 'train' or 'all', got {mode!r}.")
    uid_field, time_field = dataset.uid_field, dataset.time_field
    if mode == "all" or uid_field is None or not ("LS" in split or "RS" in split):
        if mode != "all":
            logging.getLogger().info("Semantic IDs: no per-user split to follow; fitting the tokenizer on all items.")
        mask[np.unique(iid)] = True
        mask[0] = False
        return mask
    uid = _column(inter, uid_field)
    order_key = _column(inter, time_field) if time_field in inter.columns else np.arange(len(uid))
    order = np.lexsort((np.arange(len(uid)), order_key, uid))  # by user, then time, then file order
    uid_sorted = uid[order]
    starts = np.flatnonzero(np.r_[True, uid_sorted[1:] != uid_sorted[:-1]])
    lengths = np.diff(np.r_[starts, len(uid_sorted)])
    position = np.arange(len(uid_sorted)) - np.repeat(starts, lengths)
    length = np.repeat(lengths, lengths)
    if "LS" in split:
        hold = 1 if split["LS"] == "test_only" else 2
        keep = position < length - hold
    else:
        ratio = np.asarray(split["RS"], dtype=float)
        keep = position < np.floor(length * ratio[0] / ratio.sum())
    mask[iid[order][keep]] = True
    mask[0] = False
    if not mask[1:].any():
        mask[np.unique(iid)] = True
        mask[0] = False
    return mask


def _item_tokens(config, dataset):
    return list(dataset.field2id_token[config["ITEM_ID_FIELD"]][1:])


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


def _from_sid_file(config, dataset):
    t0 = time.time()
    path = resolve_sid_file(config["sid_file"], getattr(dataset, "dataset_path", None))
    if int(config_value(config, "sid_num_tokenizers", 1)) > 1:
        raise ConfigError("sid_num_tokenizers > 1 needs sid_method: rqvae; a sid_file holds one tokenizer.")
    raw = load_sid_file(path, _item_tokens(config, dataset), dataset.dataset_name)
    size = int(config_value(config, "rq_codebook_size", 256))
    check_code_limit(raw, _item_tokens(config, dataset), max(size, len(raw)), path)
    sizes = [max(int(raw[:, level].max()) + 1, size) for level in range(raw.shape[1])]
    codes, sizes = _finish([raw], sizes, size, dataset.dataset_name, force_level=False)
    sids = SemanticIDs(codes, sizes, [raw], source="sid_file", meta={"sid_file": path})
    sids.timings = {"load_sid_file": time.time() - t0}
    sids.quality = _quality(sids)
    return sids


def embedding_key(config, dataset):
    """``(key, texts, info, encoder identity)`` of the item embeddings, without encoding."""
    from recbole_genrec.tokenizer import text

    texts, info = text.item_texts(config, dataset)
    _, identity = text.resolve_encoder(config_value(config, "sid_encoder", text.DEFAULT_ENCODER))
    max_length = int(config_value(config, "sid_max_text_length", 256))
    key = digest({"v": CACHE_VERSION, "texts": texts, "encoder": identity, "max_length": max_length})
    return key, texts, info, identity


def item_embeddings(config, dataset, show_progress=True, key_info=None):
    """``(embeddings [n_real_items, d] float32, key, info)`` from the cache or the encoder.

    ``key_info``: the result of :func:`embedding_key` when the caller has it already.
    """
    from recbole_genrec.tokenizer import text

    key, texts, info, identity = key_info or embedding_key(config, dataset)
    path = os.path.join(cache_dir(config), f"emb-{key[:20]}.npz")
    entry = load_entry(path, key)
    if entry is not None:
        return entry[0]["embeddings"], key, dict(info, cached=True, path=path)
    encoder = config_value(config, "sid_encoder", text.DEFAULT_ENCODER)
    device = config_value(config, "device", "cpu")
    logging.getLogger().info(f"Semantic IDs: encoding {len(texts)} item texts with [{encoder}] on {device}.")
    emb = text.encode_texts(
        texts,
        encoder,
        device=device,
        batch_size=int(config_value(config, "sid_encoder_batch_size", 256)),
        max_length=int(config_value(config, "sid_max_text_length", 256)),
        show_progress=show_progress,
    )
    save_entry(path, {"embeddings": emb}, {"key": key, "encoder": identity, "fields": info["fields"]})
    return emb, key, dict(info, cached=False, path=path)


def pca_whiten(emb, dim, seed=0):
    """sklearn ``PCA(whiten=True)`` to ``dim`` components (capped by the data's rank); ``dim <= 0`` = identity."""
    if dim is None or int(dim) <= 0:
        return np.asarray(emb, dtype=np.float32)
    from sklearn.decomposition import PCA

    dim = min(int(dim), emb.shape[0], emb.shape[1])
    return PCA(n_components=dim, whiten=True, random_state=seed).fit_transform(emb).astype(np.float32)


def build_semantic_ids(config, dataset, show_progress=None):
    """The semantic IDs of ``dataset`` (a RecBole dataset after its data processing).

    ``sid_file`` set: codes from the file (validated). Else text -> embeddings (cache stage
    1) -> PCA -> ``sid_method`` -> collision level (cache stage 2). Logs through RecBole's
    logger; returns :class:`SemanticIDs`.
    """
    logger = logging.getLogger()
    if show_progress is None:
        show_progress = bool(config_value(config, "show_progress", True))
    if config_value(config, "sid_file"):
        sids = _from_sid_file(config, dataset)
        logger.info(f"Semantic IDs from [{sids.meta['sid_file']}]: codebook sizes {sids.codebook_sizes}.")
        return sids

    timings = {}
    t0 = time.time()
    key_info = embedding_key(config, dataset)  # item text -> key; encoding only on a cache miss
    emb_key, text_info = key_info[0], key_info[2]
    check_identical_texts(key_info[1], _item_tokens(config, dataset), int(config_value(config, "rq_codebook_size", 256)), dataset.dataset_name)
    timings["item_text"] = time.time() - t0

    method = config_value(config, "sid_method", "rqvae")
    n_tok = int(config_value(config, "sid_num_tokenizers", 1))
    seed = int(config_value(config, "seed", 2020))
    if method == "rqvae":
        params = rq_params(config)
    elif method == "rkmeans":
        params = {key: config_value(config, "rq_" + key) for key in RKMEANS_KEYS}
        if n_tok > 1:
            raise ConfigError("sid_num_tokenizers > 1 needs sid_method: rqvae (checkpoints of one run).")
    else:
        raise ConfigError(f"sid_method must be 'rqvae' or 'rkmeans', got {method!r}.")
    train_mask = training_item_mask(config, dataset)[1:]
    pca_dim = int(config_value(config, "sid_pca_dim", -1))
    key = digest(
        {
            "v": CACHE_VERSION,
            "emb": emb_key,
            "method": method,
            "params": params,
            "pca_dim": pca_dim,
            "seed": seed,
            "train_mask": array_digest(train_mask),
            "num_tokenizers": n_tok,
        }
    )
    path = os.path.join(cache_dir(config), f"sid-{method}-{key[:20]}.npz")
    levels, size = int(params["levels"]), int(params["codebook_size"])

    entry = load_entry(path, key)
    if entry is not None:
        arrays, meta = entry
        raw = list(arrays["raw_codes"])
        source = "cache"
    else:
        t = time.time()
        emb, _, emb_info = item_embeddings(config, dataset, show_progress, key_info)
        timings["embeddings_cached" if emb_info["cached"] else "embeddings"] = time.time() - t
        t = time.time()
        x = pca_whiten(emb, pca_dim, seed)
        timings["pca"] = time.time() - t
        train_idx = np.flatnonzero(train_mask)
        t = time.time()
        if method == "rqvae":
            from recbole_genrec.tokenizer.rqvae import train_rqvae

            raw, history = train_rqvae(
                x, train_idx, params, seed=seed, device=config_value(config, "device", "cpu"), keep_last=n_tok, show_progress=show_progress
            )
        else:
            from recbole_genrec.tokenizer.rkmeans import residual_kmeans

            raw, history = [residual_kmeans(x, train_idx, levels, size, seed, int(params["kmeans_iters"]))[0]], {}
        timings["fit" if method == "rkmeans" else "fit_rqvae"] = time.time() - t
        meta = {
            "key": key,
            "method": method,
            "params": params,
            "seed": seed,
            "n_train_items": int(train_mask.sum()),
            "text_fields": text_info["fields"],
            "n_text_fallback": text_info["n_fallback"],
            "build_timings": dict(timings),
            "history": history,
        }
        save_entry(path, {"raw_codes": np.stack(raw)}, meta)
        source = "built"
    t = time.time()
    codes, sizes = _finish(raw, [size] * levels, size, dataset.dataset_name, force_level=True)
    timings["collision_level"] = time.time() - t
    sids = SemanticIDs(codes, sizes, raw, timings=timings, source=source, meta=meta)
    sids.quality = _quality(sids)
    q = sids.quality
    logger.info(
        f"Semantic IDs ({method}, {source}, [{path}]): {len(codes)} tokenizer(s), codebook sizes {sizes}; "
        f"collision rate {q['collision_rate_before']:.4f} -> {q['collision_rate_after']:.4f}, "
        f"max group {q['max_group_size']}, level usage {[lv['used'] for lv in q['levels']]}."
    )
    return sids
