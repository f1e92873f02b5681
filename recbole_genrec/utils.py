"""Model, trainer, dataset and dataloader lookup: this package first, then RecBole's.

Conventions instead of registries (as in RecBole and RecBole-GNN):

* model ``Foo`` lives in ``recbole_genrec/model/foo.py`` (class ``Foo``), its defaults in
  ``recbole_genrec/properties/model/Foo.yaml``;
* a model class with ``needs_semantic_ids = True`` gets a ``SemanticIDDataset``;
* every model trains with RecBole's trainer for it plus our hook points
  (:func:`recbole_genrec.trainer.trainer_class`); a model's extras are hooks it declares;
* ``train_sampler`` (GenPAS, see ``properties/genpas.yaml``) swaps only the training loader.
"""

import difflib
import importlib
import importlib.util
import os
import pkgutil

import recbole.utils
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_genrec.checks import check_inter_has_rows, check_item_file, empty_after_filtering_is_user_error
from recbole_genrec.errors import DatasetNotFoundError, UnknownModelError

PLUGIN_MODEL_PACKAGE = "recbole_genrec.model"
RECBOLE_MODEL_PACKAGES = (
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.sequential_recommender",
    "recbole.model.knowledge_aware_recommender",
)
# RecBole's exlib package imports lightgbm/xgboost at import time: touch it only by name.
RECBOLE_EXLIB_MODELS = ("lightgbm", "xgboost")
RECBOLE_MODEL_LIST_URL = "https://recbole.io/model_list.html"


def check_dataset_files(config):
    """Fail early, naming the path and the fix, when the atomic files are not where RecBole looks."""
    folder, name = config["data_path"], config["dataset"]
    inter = os.path.join(folder, f"{name}.inter")
    if not os.path.isdir(folder):
        raise DatasetNotFoundError(
            f"Dataset folder '{folder}' does not exist. Fix: set data_path to the folder that "
            f"contains '{name}/' (e.g. --data_path=../shared/data), or use a config from "
            "properties/dataset/ via --config_files."
        )
    if not os.path.isfile(inter):
        raise DatasetNotFoundError(
            f"Dataset '{name}' has no interaction file: '{inter}' is missing. Fix: put the "
            f"RecBole atomic file {name}.inter in '{folder}' (see README, 'Bring your own dataset')."
        )
    check_inter_has_rows(inter)


def _module_names(package):
    pkg = importlib.import_module(package)
    return [m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]


def _is_model(value):
    return isinstance(value, type) and issubclass(value, AbstractRecommender)


def _class_in_module(module_path, model_name):
    """The recommender class named ``model_name`` (any letter case) in ``module_path``, or None.

    Only RecBole recommenders count: ``--model=T5`` must not find the T5 layers of ``model/t5.py``.
    """
    if importlib.util.find_spec(module_path) is None:
        return None
    module = importlib.import_module(module_path)
    if _is_model(getattr(module, model_name, None)):
        return getattr(module, model_name)
    for name in dir(module):
        if name.lower() == model_name.lower() and _is_model(getattr(module, name)):
            raise UnknownModelError(
                f"Unknown model '{model_name}'. Model names are case-sensitive: did you mean '{name}'?"
            )
    return None


def plugin_model_names():
    """Class names of this package's models (one recommender per module, named like it)."""
    names = []
    for module_name in _module_names(PLUGIN_MODEL_PACKAGE):
        module = importlib.import_module(f"{PLUGIN_MODEL_PACKAGE}.{module_name}")
        names += [n for n in dir(module) if n.lower() == module_name and _is_model(getattr(module, n))]
    return sorted(names)


def _unknown_model_error(model_name):
    plugin = plugin_model_names()
    recbole_modules = [m for p in RECBOLE_MODEL_PACKAGES for m in _module_names(p)]
    candidates = [n.lower() for n in plugin] + recbole_modules
    close = difflib.get_close_matches(model_name.lower(), candidates, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownModelError(
        f"Unknown model '{model_name}'.{hint} Plugin models: {', '.join(plugin) or '(none)'}. "
        f"Any RecBole 1.2.1 model also works (e.g. SASRec, GRU4Rec, BERT4Rec, BPR, LightGCN); "
        f"full list: {RECBOLE_MODEL_LIST_URL}"
    )


def get_model(model_name):
    """The model class for ``model_name``: a plugin model first, then RecBole's.

    Raises ``UnknownModelError`` (listing plugin models and pointing to RecBole's list)
    where RecBole 1.2.1 would fail with "No module named 'lightgbm'".
    """
    if not isinstance(model_name, str) or not model_name:
        raise UnknownModelError(f"Model name must be a non-empty string, got {model_name!r}.")
    module_name = model_name.lower()
    for package in (PLUGIN_MODEL_PACKAGE,) + RECBOLE_MODEL_PACKAGES:
        model_class = _class_in_module(f"{package}.{module_name}", model_name)
        if model_class is not None:
            return model_class
    if module_name in RECBOLE_EXLIB_MODELS:
        return recbole.utils.get_model(model_name)
    raise _unknown_model_error(model_name)


def create_dataset(config):
    """RecBole's ``create_dataset``, except that semantic-ID models get ``SemanticIDDataset``.

    Every dataset is built from the atomic files: RecBole's processed-dataset pickle is never
    loaded (:mod:`recbole_genrec.data.no_pickle`); semantic IDs come from our content-hashed cache.
    The shims of :mod:`recbole_genrec.compat` are installed here (dataset loading and the models
    built on it need some), the first RecBole path of a run.
    """
    from recbole_genrec import compat
    from recbole_genrec.data.no_pickle import create_recbole_dataset, refuse_pickle_caches

    compat.apply(type(config))
    check_dataset_files(config)
    refuse_pickle_caches(config)
    check_item_file(config)
    model_class = get_model(config["model"])
    with empty_after_filtering_is_user_error(config):
        if getattr(model_class, "needs_semantic_ids", False):
            from recbole_genrec.data.dataset import SemanticIDDataset

            return SemanticIDDataset(config)
        return create_recbole_dataset(config)


def data_preparation(config, dataset):
    """RecBole's ``data_preparation``; with ``train_sampler`` set, the training loader draws
    GenPAS pairs; with ``length_bucket_batches > 0`` its batches are length-bucketed
    (:mod:`recbole_genrec.data.dataloader`). Validation and test loaders are always exactly RecBole's.
    Pickled dataloaders in ``checkpoint_dir`` are never loaded (:mod:`recbole_genrec.data.no_pickle`)."""
    from recbole_genrec.data.dataloader import GenPASTrainDataLoader, LengthBucketTrainDataLoader, length_bucket_batches
    from recbole_genrec.data.genpas import sampler_spec_from_config
    from recbole_genrec.data.no_pickle import recbole_data_preparation

    train_data, valid_data, test_data = recbole_data_preparation(config, dataset)
    if sampler_spec_from_config(config) is not None:  # GenPAS pairs instead of RecBole's augmentation
        train_data = GenPASTrainDataLoader(config, train_data._dataset, train_data._sampler, shuffle=True)
    elif length_bucket_batches(config) > 0:
        train_data = LengthBucketTrainDataLoader(
            config, train_data._dataset, train_data._sampler, shuffle=train_data.shuffle
        )
    return train_data, valid_data, test_data
