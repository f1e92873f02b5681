"""Checks that turn bad input into a one-line ``UserError`` instead of a traceback or a silently
wrong result (issue 15). Each names the key or file at fault and the fix.

Rules chosen where RecBole is silent:

* ``epochs`` must be >= 1 (0 or less evaluated an untrained model and exited 0).
* ``train_sampler`` (GenPAS) and ``length_bucket_batches`` need a sequential model.
* An ``.inter`` file needs at least one interaction row; a dataset that RecBole's filters
  (``user_inter_num_interval``, ...) leave empty is named with those keys.
* Duplicate ids in an ``.item`` file are an error (count, first example with its lines):
  RecBole keeps every row, which shifts the item features of all later items, and the
  semantic-ID text would take one row silently. Keep one row per item.
* Missing-value markers in item text (``NaN``, ``null``, ``None``, ``N/A``, ... : the strings
  pandas reads as missing) count as empty text, with a warning giving their number.
* Items whose texts are identical get identical codes on every level; when more of them
  than the collision level's size share one text, the build fails: say so before encoding.
"""

import contextlib
import csv
import logging
import os

from recbole_genrec.errors import ConfigError, DataFileError, UserError

# the strings pandas' read_csv treats as missing by default
MISSING_TEXT_VALUES = frozenset({
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})  # fmt: skip


@contextlib.contextmanager
def recbole_config_errors():
    """RecBole's own config validation (``topk``, metrics, ...) raises plain errors: make them ConfigErrors."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as err:
        message = str(err).rstrip()
        end = "" if message.endswith((".", "!", "?")) else "."
        raise ConfigError(f"{message}{end} Fix: correct that key on the command line or in the config file.") from err


def _model_type_name(config):
    model_type = config.get("MODEL_TYPE")
    return getattr(model_type, "name", str(model_type))


def check_run_values(config):
    """Values no run can use, checked once the final config exists (``config``: a dict)."""
    epochs = config.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs < 1:
        raise ConfigError(
            f"epochs={epochs}: a run needs at least one training epoch (with {epochs} it would report an "
            "untrained model's metrics). Fix: --epochs=1 or more."
        )
    sampler = config.get("train_sampler")
    sequential = _model_type_name(config) == "SEQUENTIAL"
    if sampler is not None and str(sampler).lower() != "default" and not sequential:
        raise ConfigError(
            f"train_sampler={sampler} draws GenPAS (history, target) pairs, which needs a sequential model; "
            f"{config.get('model')} is a {_model_type_name(config)} model. Fix: drop --train_sampler or use a "
            "sequential model (SASRec, GRU4Rec, BERT4Rec, TIGER, ...)."
        )
    buckets = config.get("length_bucket_batches")
    if isinstance(buckets, int) and buckets > 0 and not sequential:
        raise ConfigError(
            f"length_bucket_batches={buckets} buckets histories by length, which needs a sequential model; "
            f"{config.get('model')} is a {_model_type_name(config)} model. Fix: --length_bucket_batches=0."
        )


def check_inter_has_rows(path):
    """``DataFileError`` when the ``.inter`` file holds a header and no interaction."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        f.readline()
        if not any(line.strip() for line in f):
            raise DataFileError(
                f"Interaction file '{path}' has no interactions (a header line only). Fix: add one "
                "'user<TAB>item<TAB>timestamp' row per interaction."
            )


@contextlib.contextmanager
def empty_after_filtering_is_user_error(config):
    """RecBole's "Some feat is empty" (every row filtered out), with the dataset and the keys named."""
    try:
        yield
    except ValueError as err:
        if isinstance(err, UserError) or "Some feat is empty" not in str(err):
            raise
        raise DataFileError(
            f"Dataset '{config['dataset']}' is empty after RecBole's filters. Fix: loosen "
            "user_inter_num_interval / item_inter_num_interval / val_interval, or check load_col."
        ) from err


def check_unique_item_ids(ids, path):
    """``DataFileError`` naming the count and an example when ``ids`` (one per data row) repeat."""
    seen, duplicates = {}, {}
    for row, item in enumerate(ids):
        if item in seen:
            duplicates.setdefault(item, [seen[item] + 2]).append(row + 2)  # file lines: header is 1
        else:
            seen[item] = row
    if duplicates:
        item, lines = next(iter(duplicates.items()))
        raise DataFileError(
            f"Item file '{path}' has {len(duplicates)} duplicate item id{'s' if len(duplicates) > 1 else ''} (e.g. {item!r} on lines "
            f"{', '.join(map(str, lines))}): RecBole would keep every row and misalign item features, and "
            "only one row could give the item's text. Fix: keep one row per item id."
        )


def check_item_file(config):
    """Duplicate ids in ``<dataset>.item`` (when RecBole loads it) are an error."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.item")
    load_col = config["load_col"] if "load_col" in config else None
    item_file_loaded = load_col is None or (isinstance(load_col, dict) and "item" in load_col)
    if not os.path.isfile(path) or not item_file_loaded:
        return
    sep = config["field_separator"] or "\t"
    id_field = config["ITEM_ID_FIELD"]
    with open(path, "r", encoding=config["encoding"] or "utf-8", newline="") as f:
        header = f.readline().rstrip("\r\n").split(sep)
        names = [column.split(":")[0] for column in header]
        if id_field not in names:
            return  # RecBole reports a missing id column itself
        col = names.index(id_field)
        reader = csv.reader(f, delimiter=sep, quoting=csv.QUOTE_NONE) if len(sep) == 1 else (
            line.rstrip("\r\n").split(sep) for line in f)
        check_unique_item_ids((row[col] if len(row) > col else "" for row in reader), path)


def blank_missing_text(table, fields):
    """Replace missing-value markers (``NaN``, ``null``, ...) in ``table[fields]`` by ''; returns their count."""
    count = 0
    for field in fields:
        mask = table[field].str.strip().isin(MISSING_TEXT_VALUES)
        count += int(mask.sum())
        table.loc[mask, field] = ""
    return count


def warn_missing_text(count, fields, path):
    if count:
        logging.getLogger().warning(
            f"Semantic IDs: {count} values of fields {fields} in [{path}] are missing-value markers "
            "(NaN, null, None, N/A, ...); they are treated as empty text."
        )


def check_identical_texts(texts, item_tokens, capacity, dataset_name):
    """``ConfigError`` when more than ``capacity`` items share one text (their IDs cannot be unique)."""
    groups = {}
    for token, text in zip(item_tokens, texts):
        groups.setdefault(text, []).append(token)
    text, items = max(groups.items(), key=lambda kv: len(kv[1]), default=("", []))
    if len(items) > capacity:
        raise ConfigError(
            f"Dataset [{dataset_name}]: {len(items)} items have the identical text {text!r} (e.g. items "
            f"{', '.join(map(repr, items[:3]))}), so they get identical embeddings and codes, but the collision "
            f"level that tells them apart has only {capacity} codes. Fix: make their texts differ (more "
            "sid_text_fields or a sid_text_template), raise rq_codebook_size, or give codes with sid_file."
        )
