"""``Config``: RecBole's configurator plus this package's defaults, checks and CPU scale-out.

What it adds to :class:`recbole.config.Config` (and nothing else):

* Plugin models are resolved first (``recbole_genrec.utils.get_model``), then RecBole's, and
  an unknown name raises a real error instead of RecBole's "No module named 'lightgbm'".
* Defaults are layered as RecBole's, then every ``recbole_genrec/properties/*.yaml``
  (sampler, tokenizer, ... keys), then ``properties/dataset/<dataset>.yaml`` (the embedded
  ml-100k: leave-one-out, item text loaded), then for each class of the model's lineage,
  base first, ``properties/model/<Class>.yaml`` and ``properties/model/<dataset>/<Class>.yaml``
  (``TIGER.yaml``, ``ml-100k/TIGER.yaml``, ``TIGER_APAO.yaml``): paper defaults, with
  CPU-sized overrides for the embedded quick-start dataset, as RecBole does for ml-100k.
* Config files are checked (missing file, invalid yaml, not a mapping) with a message naming
  the file; external values whose type contradicts the key's default (``--epochs=abc``)
  raise; keys nobody knows are reported with a warning (RecBole silently ignores them).
* Distributed mode (``nproc``/``world_size``) uses ``gloo`` on CPU when no GPU is usable;
  RecBole 1.2.1 hard-codes ``nccl`` + CUDA.
"""

import functools
import glob
import os
from logging import getLogger

import recbole.config
import torch
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.config.configurator import (
    dataset_arguments,
    evaluation_arguments,
    general_arguments,
    training_arguments,
)

from recbole_genrec.errors import ConfigError
from recbole_genrec.utils import get_model

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")

# Keys RecBole sets or reads at run time that have no yaml default.
_RUNTIME_KEYS = {
    "model", "dataset", "config_files", "nproc", "world_size", "ip", "port", "offset",
    "local_rank", "group_offset", "MODEL_TYPE", "device", "single_spec", "eval_type",
    "data_path", "benchmark_filename", "dataset_save_path", "dataloaders_save_path",
    "MODEL_INPUT_TYPE", "train_neg_sample_args", "valid_neg_sample_args",
    "test_neg_sample_args", "neg_sampling", "eval_setting", "additional_feat_suffix",
    "numerical_features", "discretization", "preload_weight", "alias_of_item_id",
    "alias_of_user_id", "alias_of_entity_id", "alias_of_relation_id", "threshold",
    "normalize_field", "normalize_all", "enable_amp", "enable_scaler", "load_col",
    "unload_col", "unused_col", "rm_dup_inter", "val_interval", "filter_inter_by_user_or_item",
    "user_inter_num_interval", "item_inter_num_interval", "wandb_project", "shuffle",
}


@functools.lru_cache(maxsize=1)
def _yaml_loader():
    # RecBole's loader (it reads "1e-3" as a float, plain yaml reads a string).
    return RecBoleConfig._build_yaml_loader(None)


def load_yaml_file(path, loader=None):
    """Read a yaml config file into a dict, with errors that name the file and the fix."""
    if not os.path.isfile(path):
        raise ConfigError(
            f"Config file '{path}' does not exist. Fix: check the path given to --config_files "
            "(paths are relative to the current directory)."
        )
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.load(text, Loader=loader or _yaml_loader())
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file '{path}' is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config file '{path}' must hold a mapping of `key: value` lines, "
            f"got a {type(data).__name__}."
        )
    return data


def _type_error(key, default, value, source):
    kind = type(default).__name__
    return ConfigError(
        f"Config key '{key}' expects {kind} (default: {default!r}) but got {value!r} "
        f"({type(value).__name__}) from {source}. Fix: give a {kind} value, e.g. "
        f"--{key}={default!r}."
    )


def check_value_type(key, default, value, source):
    """Raise ``ConfigError`` when ``value`` cannot stand where the default's type is expected.

    Checked: bool, int and float defaults (an int is fine for a float; None is always allowed
    as an explicit "unset"), and list/dict defaults given a plain string. Strings and None
    defaults accept anything, as RecBole does.
    """
    if value is None or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _type_error(key, default, value, source)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, default, value, source)
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(key, default, value, source)
    elif isinstance(default, (list, dict)) and isinstance(value, str):
        raise _type_error(key, default, value, source)


class Config(RecBoleConfig):
    """RecBole's ``Config`` for plugin and built-in models alike (see the module docstring)."""

    # Pickled (checkpoints, RecBole's dataset cache) without class references, so torch's
    # safe loader needs to allow only this class, RecBole's enums and torch.device.
    _CLASS_REFERENCES = ("model_class", "yaml_loader")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._CLASS_REFERENCES}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.model_class = get_model(self.model)
        self.yaml_loader = _yaml_loader()

    def _load_config_files(self, file_list):
        config = {}
        loader = self._build_yaml_loader()
        for path in file_list or []:
            config.update(load_yaml_file(path, loader))
        return config

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise ConfigError("No model given. Fix: pass --model=<Name> (e.g. --model=TIGER).")
        if isinstance(model, str):
            model_name, model_class = model, get_model(model)
        else:
            model_name, model_class = model.__name__, model
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise ConfigError("No dataset given. Fix: pass --dataset=<name> (e.g. --dataset=ml-100k).")
        return model_name, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        files = sorted(glob.glob(os.path.join(PROPERTIES_DIR, "*.yaml")))
        # RecBole ships lightgbm.yaml/xgboost.yaml but looks for LightGBM.yaml/XGBoost.yaml:
        # on a case-sensitive file system those models would start without their defaults
        recbole_model_dir = os.path.join(os.path.dirname(recbole.config.__file__), "..", "properties", "model")
        if not os.path.isfile(os.path.join(recbole_model_dir, f"{model}.yaml")):
            files.insert(0, os.path.join(recbole_model_dir, f"{model.lower()}.yaml"))
        files.append(os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"))
        # a model inherits its base classes' defaults (TIGER.yaml, then TIGER_APAO.yaml), each
        # followed by its defaults on this dataset (model/ml-100k/TIGER.yaml: CPU-sized quick start)
        for name in [c.__name__ for c in reversed(model_class.__mro__)]:
            files.append(os.path.join(PROPERTIES_DIR, "model", f"{name}.yaml"))
            files.append(os.path.join(PROPERTIES_DIR, "model", dataset, f"{name}.yaml"))
        for path in files:
            if os.path.isfile(path):
                self.internal_config_dict.update(load_yaml_file(path, self.yaml_loader))
        self._check_external_config()

    def _check_external_config(self):
        sources = (
            ("config file", self.file_config_dict),
            ("config_dict", self.variable_config_dict),
            ("the command line", self.cmd_config_dict),
        )
        for source, values in sources:
            for key, value in values.items():
                if key in self.internal_config_dict:
                    check_value_type(key, self.internal_config_dict[key], value, source)
        known = (
            set(self.internal_config_dict)
            | set(general_arguments)
            | set(training_arguments)
            | set(evaluation_arguments)
            | set(dataset_arguments)
            | _RUNTIME_KEYS
        )
        unknown = sorted(k for k in self.external_config_dict if k not in known)
        if unknown:
            getLogger().warning(
                "Unknown config keys (not used by RecBole, recbole_genrec or model "
                f"'{self.model}'; check their spelling): {', '.join(unknown)}"
            )
        self.unknown_keys = unknown

    def _get_final_config_dict(self):
        """CE-loss models draw no training negatives unless the user asks for them.

        With RecBole's default (one uniform negative) a CE-loss sequential model refuses to
        start, and every RecBole user must remember ``train_neg_sample_args: ~``.
        """
        config = super()._get_final_config_dict()
        if config.get("loss_type") == "CE" and "train_neg_sample_args" not in self.external_config_dict:
            config["train_neg_sample_args"] = None
        return config

    def _init_device(self):
        """RecBole's device set-up, except that distributed runs fall back to gloo on CPU."""
        config = self.final_config_dict
        if "local_rank" not in config:
            return super()._init_device()
        gpu_id = config["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
        config["gpu_id"] = gpu_id
        use_cuda = torch.cuda.is_available() and len(gpu_id) > 0
        if use_cuda:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
            if len(gpu_id.split(",")) < config["nproc"]:
                raise ConfigError(
                    f"nproc={config['nproc']} needs as many GPUs, but gpu_id='{gpu_id}'. "
                    "Fix: list one GPU per process in --gpu_id."
                )
        rank = config["local_rank"] + config["offset"]
        torch.distributed.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=config["world_size"],
            init_method=f"tcp://{config['ip']}:{config['port']}",
        )
        if use_cuda:
            config["device"] = torch.device("cuda", config["local_rank"])
            torch.cuda.set_device(config["local_rank"])
        else:
            config["device"] = torch.device("cpu")
        config["single_spec"] = False
        if config["local_rank"] != 0:
            config["state"] = "error"
            config["show_progress"] = False
            config["verbose"] = False
