"""RecBole's dataset and dataloader creation without its pickle caches.

RecBole 1.2.1's ``create_dataset`` and ``data_preparation`` ``pickle.load`` any
``<checkpoint_dir>/<dataset>-<DatasetClass>.pth`` and ``<dataset>-for-<Model>-dataloader.pth``
they find, on every run, whatever the flags say, and unpickling runs any code the file holds.
A shared or downloaded ``saved/`` folder would then run code on a plain training run. This
module is the same two steps minus those loads: the dataset is always built from the atomic
files and the split always made from it (both take seconds; semantic IDs have their own
checksummed, pickle-free cache). Asking for RecBole's caches (``save_dataset``,
``save_dataloaders``, ``dataset_save_path``, ``dataloaders_save_path``) is a ``ConfigError``
that says why, rather than a silently ignored flag.
"""

import importlib
from logging import getLogger

from recbole.data.utils import create_samplers, get_dataloader
from recbole.sampler import KGSampler
from recbole.utils import ModelType, set_color

from recbole_genrec.errors import ConfigError

PICKLE_CACHE_KEYS = ("save_dataset", "save_dataloaders", "dataset_save_path", "dataloaders_save_path")

_DATASET_CLASS = {
    ModelType.GENERAL: "Dataset",
    ModelType.SEQUENTIAL: "SequentialDataset",
    ModelType.CONTEXT: "Dataset",
    ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
    ModelType.TRADITIONAL: "Dataset",
    ModelType.DECISIONTREE: "Dataset",
}


def refuse_pickle_caches(config):
    """``ConfigError`` when the config asks for one of RecBole's pickle caches."""
    asked = [key for key in PICKLE_CACHE_KEYS if key in config and config[key]]
    if asked:
        raise ConfigError(
            f"{', '.join(asked)}: RecBole's dataset/dataloader caches are pickle files, and loading a "
            "pickle runs whatever code it holds, so recbole_genrec never writes or reads them. Fix: drop "
            f"{' and '.join('--' + k for k in asked)} (the dataset is rebuilt from the atomic files in "
            "seconds; semantic IDs have their own safe cache)."
        )


def recbole_dataset_class(config):
    """The class RecBole's ``create_dataset`` would instantiate for ``config``."""
    module = importlib.import_module("recbole.data.dataset")
    special = getattr(module, config["model"] + "Dataset", None)
    return special if special is not None else getattr(module, _DATASET_CLASS[config["MODEL_TYPE"]])


def create_recbole_dataset(config):
    """RecBole's ``create_dataset``, always from the atomic files (never from a pickle)."""
    return recbole_dataset_class(config)(config)


def recbole_data_preparation(config, dataset):
    """RecBole's ``data_preparation``, always splitting ``dataset`` (never loading pickled loaders)."""
    refuse_pickle_caches(config)
    built = dataset.build()
    train_dataset, valid_dataset, test_dataset = built
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built)
    if config["MODEL_TYPE"] != ModelType.KNOWLEDGE:
        train_data = get_dataloader(config, "train")(config, train_dataset, train_sampler, shuffle=config["shuffle"])
    else:
        kg_sampler = KGSampler(
            dataset, config["train_neg_sample_args"]["distribution"], config["train_neg_sample_args"]["alpha"]
        )
        train_data = get_dataloader(config, "train")(config, train_dataset, train_sampler, kg_sampler, shuffle=True)
    valid_data = get_dataloader(config, "valid")(config, valid_dataset, valid_sampler, shuffle=False)
    test_data = get_dataloader(config, "test")(config, test_dataset, test_sampler, shuffle=False)
    logger = getLogger()
    logger.info(
        set_color("[Training]: ", "pink") + set_color("train_batch_size", "cyan") + " = "
        + set_color(f'[{config["train_batch_size"]}]', "yellow") + set_color(" train_neg_sample_args", "cyan")
        + ": " + set_color(f'[{config["train_neg_sample_args"]}]', "yellow")
    )
    logger.info(
        set_color("[Evaluation]: ", "pink") + set_color("eval_batch_size", "cyan") + " = "
        + set_color(f'[{config["eval_batch_size"]}]', "yellow") + set_color(" eval_args", "cyan")
        + ": " + set_color(f'[{config["eval_args"]}]', "yellow")
    )
    return train_data, valid_data, test_data
