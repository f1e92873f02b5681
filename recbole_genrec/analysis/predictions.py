"""Per-instance predictions of any RecBole model, saved for the validation and test users.

One file per model run (``.npz``, never a pickle), written atomically with the checksum of
``recbole_genrec.tokenizer.cache`` (``save_entry`` / ``load_entry``). For each split
(``valid``, ``test``) it holds, per instance (= one evaluation row of RecBole's full-sort
loader; with ``group_by: user`` leave-one-out, one per user):

``<split>__user``        [M] internal user id (the instance id)
``<split>__target``      [M] internal item id of the target
``<split>__items``       [M, N] top-N item ids, best first (-1 = an invalid/dead beam)
``<split>__scores``      [M, N] their scores: raw ``full_sort_predict`` scores for models that
                         score all items, the beam's joint log-prob for generative models
``<split>__msp``         [M] max softmax probability over all real items (NaN when the model
                         does not score all items)

plus ``item_sid`` ([n_items, L], generative models only: the codes the model used). The
header (``meta``) names the format, model, dataset, top-N, whether the model scores all
items, the digest of the item-id mapping and, per split, the digest of the instance ids and
targets. :func:`check_compatible` refuses files from another dataset, another split or
other targets with a one-line message.

Written after training with ``--save_predictions=FILE`` or, for a model trained earlier, from its
best checkpoint (the run's own config, split and semantic IDs, the same file)::

    python -m recbole_genrec.analysis.predictions saved/TIGER-<run>.pth --out TIGER.npz

Generative models are recognised by the package's ``needs_semantic_ids`` class attribute
(the same convention as ``utils.create_dataset``); their top-N comes from ``model.generate``
(beam order = the ranking RecBole evaluates, and the beam scores are the log-probs the
ensemble needs, where ``full_sort_predict`` only returns rank-based scores). Every other
model is scored with ``full_sort_predict`` and the padding item is excluded, as RecBole's
trainer does.
"""

import os

import numpy as np
import torch

from recbole_genrec.errors import UserError
from recbole_genrec.tokenizer.cache import array_digest, digest, load_entry, save_entry

FORMAT = "recbole_genrec.predictions/1"
FIELDS = ("user", "target", "items", "scores", "msp")


class PredictionsError(UserError, ValueError):
    """A predictions file that cannot be used (missing, corrupt, or not comparable)."""


def is_generative(model):
    return bool(getattr(type(model), "needs_semantic_ids", False))


@torch.no_grad()
def collect_predictions(model, eval_data, top_n):
    """Top-``top_n`` predictions of ``model`` for every instance of a RecBole eval loader.

    Returns a dict of numpy arrays (the ``FIELDS`` above). Callable from a trainer hook:
    it only needs the model and the loader, and restores the model's train/eval mode.
    """
    was_training = model.training
    model.eval()
    top_n_of = _generative_top_n if is_generative(model) else _full_sort_top_n
    out = {name: [] for name in FIELDS}
    device = next(model.parameters()).device
    try:
        for batch in eval_data:
            interaction = batch[0].to(device)
            user, target = (interaction[field].cpu().numpy() for field in (model.USER_ID, model.ITEM_ID))
            for name, value in zip(FIELDS, (user, target, *top_n_of(model, interaction, top_n))):
                out[name].append(value)
    finally:
        model.train(was_training)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _full_sort_top_n(model, interaction, top_n):
    scores = model.full_sort_predict(interaction).view(-1, model.n_items).float()
    scores[:, 0] = -np.inf  # the padding item, as RecBole's full-sort evaluation
    values, items = torch.topk(scores, min(top_n, model.n_items - 1), dim=1)
    msp = torch.exp(values[:, 0] - torch.logsumexp(scores, dim=1))
    return items.cpu().numpy(), values.cpu().numpy(), msp.cpu().numpy()


def _generative_top_n(model, interaction, top_n):
    result = model.generate(interaction)
    items, scores = result.items[:, :top_n], result.scores[:, :top_n].float()
    items = torch.where(torch.isfinite(scores), items, torch.full_like(items, -1))
    msp = np.full(items.shape[0], np.nan, dtype=np.float32)
    return items.cpu().numpy(), scores.cpu().numpy(), msp


def instance_digest(split, user, target):
    return digest({"split": split, "user": np.asarray(user, np.int64), "target": np.asarray(target, np.int64)})


def item_mapping_digest(dataset):
    return array_digest(np.asarray(dataset.field2id_token[dataset.iid_field]).astype(str))


def output_path(setting, model_name):
    """``save_predictions`` names a ``.npz`` file, or a folder that gets ``<model>.npz``."""
    setting = str(setting)
    return setting if setting.endswith(".npz") else os.path.join(setting, f"{model_name}.npz")


def save_predictions(path, model, dataset_name, item_dataset, splits, top_n, extra_meta=None):
    """Collect ``splits`` (``{"valid": loader, "test": loader}``) and write one file at ``path``."""
    collected = {split: collect_predictions(model, loader, top_n) for split, loader in splits.items()}
    item_sid = item_dataset.item_sid.cpu().numpy() if is_generative(model) else None
    return write_predictions(
        path, collected, type(model).__name__, dataset_name, item_mapping_digest(item_dataset),
        scores_all_items=not is_generative(model), item_sid=item_sid, extra_meta=extra_meta,
    )


def write_predictions(path, collected, model_name, dataset_name, item_mapping, scores_all_items, item_sid=None, extra_meta=None):
    """Write ``collected`` (``{split: {field: array}}``, the ``FIELDS``) with its header, atomically."""
    arrays, meta_splits = {}, {}
    for split, pred in collected.items():
        for name in FIELDS:
            arrays[f"{split}__{name}"] = np.asarray(pred[name])
        meta_splits[split] = {"n": int(len(pred["user"])), "instances": instance_digest(split, pred["user"], pred["target"])}
    if item_sid is not None:
        arrays["item_sid"] = np.asarray(item_sid)
    meta = {
        "format": FORMAT,
        "model": model_name,
        "dataset": dataset_name,
        "top_n": max(int(arrays[f"{split}__items"].shape[1]) for split in collected),
        "scores_all_items": bool(scores_all_items),
        "item_mapping": item_mapping,
        "splits": meta_splits,
        **(extra_meta or {}),
    }
    save_entry(path, arrays, meta)
    return path


def save_from_run(config, model, train_data, valid_data, test_data):
    """The ``save_predictions`` switch of ``run_recbole_genrec``: write the file, return its path."""
    path = output_path(config["save_predictions"], config["model"])
    extra = {"config": {k: str(config[k]) for k in ("seed", "MAX_ITEM_LIST_LENGTH", "eval_args", "epochs") if k in config}}
    return save_predictions(
        path, model, config["dataset"], train_data._dataset,
        {"valid": valid_data, "test": test_data}, int(config["predictions_top_n"]), extra,
    )


class Predictions:
    """A loaded predictions file: ``meta`` and ``split(name) -> dict of arrays``."""

    def __init__(self, path, arrays, meta):
        self.path, self.arrays, self.meta = path, arrays, meta

    @property
    def model(self):
        return self.meta["model"]

    @property
    def scores_all_items(self):
        return bool(self.meta["scores_all_items"])

    @property
    def item_sid(self):
        return self.arrays.get("item_sid")

    def split(self, name):
        if name not in self.meta["splits"]:
            raise PredictionsError(
                f"Predictions file '{self.path}' has no '{name}' split (it has {sorted(self.meta['splits'])}). "
                "Fix: rerun the model with --save_predictions."
            )
        return {field: self.arrays[f"{name}__{field}"] for field in FIELDS}


def load_predictions(path):
    """Read and validate a predictions file; a missing/corrupt/foreign file is a ``PredictionsError``."""
    if not os.path.isfile(path):
        raise PredictionsError(f"Predictions file '{path}' does not exist. Fix: run the model with --save_predictions={path}.")
    entry = load_entry(path)
    if entry is None:
        raise PredictionsError(f"Predictions file '{path}' is corrupt or incomplete. Fix: rerun the model with --save_predictions.")
    arrays, meta = entry
    if meta.get("format") != FORMAT:
        raise PredictionsError(f"'{path}' is not a recbole_genrec predictions file (format {meta.get('format')!r}, expected {FORMAT!r}).")
    return Predictions(path, arrays, meta)


def check_compatible(preds, dataset=None, expected=None):
    """Refuse predictions that do not describe the same instances.

    ``preds``: list of :class:`Predictions`. All must share the dataset, the item-id mapping
    and, per split present in all of them, the same instance ids and targets. ``dataset``
    (name) and ``expected`` (``{split: instance digest}`` of the instances being labelled)
    optionally pin them to the dataset of the analysis.
    """
    first = preds[0]
    for p in preds:
        if dataset is not None and p.meta["dataset"] != dataset:
            raise PredictionsError(
                f"Predictions file '{p.path}' is for dataset '{p.meta['dataset']}', not '{dataset}'. "
                "Fix: pass predictions saved on the same dataset."
            )
        if p.meta["dataset"] != first.meta["dataset"]:
            raise PredictionsError(
                f"Predictions '{first.path}' (dataset '{first.meta['dataset']}') and '{p.path}' "
                f"(dataset '{p.meta['dataset']}') come from different datasets."
            )
        if p.meta["item_mapping"] != first.meta["item_mapping"]:
            raise PredictionsError(
                f"Predictions '{first.path}' and '{p.path}' use different item-id mappings "
                "(different filtering or dataset files). Fix: rerun both with the same config files."
            )
    splits = set.intersection(*(set(p.meta["splits"]) for p in preds))
    if not splits:
        raise PredictionsError(f"Predictions files {[p.path for p in preds]} share no split.")
    for split in sorted(splits):
        ref = expected[split] if expected and split in expected else first.meta["splits"][split]["instances"]
        for p in preds:
            if p.meta["splits"][split]["instances"] != ref:
                other = "the dataset's instances" if expected and split in expected else f"'{first.path}'"
                raise PredictionsError(
                    f"Predictions '{p.path}' ({split} split) hold other instances or targets than {other}: "
                    "files from different splits, seeds or evaluation settings cannot be compared. "
                    "Fix: save all predictions with the same config files and eval_args."
                )
    return sorted(splits)


def predictions_from_checkpoint(checkpoint, out):
    """Write the predictions file of the model in RecBole checkpoint ``checkpoint`` to ``out``.

    The checkpoint's own config rebuilds the dataset and split (the semantic IDs come from the
    content-hashed cache, or are rebuilt by the same seeded recipe), the weights are loaded with
    torch's safe loader, and the file is what ``--save_predictions`` would have written at the
    end of that run.
    """
    from recbole.utils import init_seed

    from recbole_genrec.config import Config
    from recbole_genrec.compat import apply
    from recbole_genrec.utils import create_dataset, data_preparation, get_model

    apply(Config)  # the allow-list of what a RecBole checkpoint holds
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # missing, truncated, or holding objects the safe loader refuses
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PredictionsError(f"Cannot load checkpoint '{checkpoint}' safely ({first}). Fix: pass a .pth file a run wrote.") from err
    if not isinstance(state, dict) or "config" not in state or "state_dict" not in state:
        raise PredictionsError(f"'{checkpoint}' is not a RecBole best-model checkpoint (no config/state_dict).")
    config = state["config"]
    config["save_predictions"], config["device"] = out, torch.device("cpu")
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset)
    model.load_state_dict(state["state_dict"])
    model.load_other_parameter(state.get("other_parameter"))
    return save_from_run(config, model, train_data, valid_data, test_data)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m recbole_genrec.analysis.predictions",
                                     description="Save the valid/test predictions of a trained model from its best checkpoint.")
    parser.add_argument("checkpoint", help="a best-model .pth file of run_recbole_genrec (in checkpoint_dir)")
    parser.add_argument("--out", required=True, help="the .npz file to write (input of python -m recbole_genrec.analysis.memgen)")
    args = parser.parse_args(argv)
    try:
        print(predictions_from_checkpoint(args.checkpoint, args.out))
    except UserError as err:
        raise SystemExit(f"error: {err}")


if __name__ == "__main__":
    main()
