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
* Distributed mode (``nproc``/``world_size``) uses ``gloo`` on CPU when no GPU is usable
  (``compat.init_distributed_device``); RecBole 1.2.1 hard-codes ``nccl`` + CUDA.
"""

import functools
import glob
import os
import sys
from logging import getLogger

import recbole.config
import yaml
from recbole.config import Config as RecBoleConfig
from recbole.config.configurator import dataset_arguments, evaluation_arguments, general_arguments, training_arguments

from recbole_genrec.checks import check_run_values, recbole_config_errors
from recbole_genrec.defaults import PROPERTIES_DIR
from recbole_genrec.errors import ConfigError
from recbole_genrec.utils import get_model

# Keys of the launch itself (the command line's --model/--dataset/--config_files and the
# distributed-run arguments of RecBole's and our quick start), which no yaml file holds.
LAUNCH_KEYS = frozenset(
    ("model", "dataset", "config_files", "nproc", "world_size", "ip", "port", "offset", "group_offset", "local_rank")
)


@functools.lru_cache(maxsize=1)
def recbole_known_keys():
    """Every key RecBole documents: its yaml defaults (all of ``recbole/properties``) and argument lists."""
    import recbole

    root = os.path.join(os.path.dirname(recbole.__file__), "properties")
    keys = set(general_arguments) | set(training_arguments) | set(evaluation_arguments) | set(dataset_arguments)
    for path in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True):
        keys |= set(load_yaml_file(path))
    return frozenset(keys)


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


def check_value_type(key, default, value, source):
    """Raise ``ConfigError`` when ``value`` cannot stand where the default's type is expected.

    Checked: bool, int and float defaults (an int is fine for a float; None is always allowed
    as an explicit "unset"), and list/dict defaults given a plain string. Strings and None
    defaults accept anything, as RecBole does.
    """
    if value is None or default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = not (isinstance(default, (list, dict)) and isinstance(value, str))
    if not ok:
        kind = type(default).__name__
        raise ConfigError(
            f"Config key '{key}' expects {kind} (default: {default!r}) but got {value!r} "
            f"({type(value).__name__}) from {source}. Fix: give a {kind} value, e.g. --{key}={default!r}."
        )


class Config(RecBoleConfig):
    """RecBole's ``Config`` for plugin and built-in models alike (see the module docstring)."""

    # Pickled (checkpoints, RecBole's dataset cache) without class references, so torch's
    # safe loader needs to allow only this class, RecBole's enums and torch.device.
    _CLASS_REFERENCES = ("model_class", "yaml_loader")

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, argv=None):
        """RecBole's arguments, plus ``argv``: the ``--key=value`` list to read (default ``sys.argv[1:]``)."""
        self._argv = list(sys.argv[1:] if argv is None else argv)
        super().__init__(model, dataset, config_file_list, config_dict)
        self._report_unknown_keys()

    def _load_cmd_line(self):
        """RecBole's command-line parsing, of ``self._argv`` (never of the process's ``sys.argv``)."""
        values, ignored = {}, []
        for arg in self._argv:
            name, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
            if not sep or not name or "=" in value:
                ignored.append(arg)
            elif values.get(name, value) != value:
                raise ConfigError(f"--{name} is given twice with different values ({values[name]!r}, {value!r}).")
            else:
                values[name] = value
        if ignored:
            getLogger().warning(f"command line args [{' '.join(ignored)}] will not be used in RecBole")
        return self._convert_config_dict(values)

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

    def _report_unknown_keys(self):
        """Warn about external keys nobody reads: not RecBole's, not ours, not set by RecBole at run time."""
        set_by_recbole = set(self.final_config_dict) - set(self.external_config_dict)
        known = set(self.internal_config_dict) | recbole_known_keys() | set_by_recbole | LAUNCH_KEYS
        unknown = sorted(k for k in self.external_config_dict if k not in known)
        if unknown:
            getLogger().warning(
                "Unknown config keys (not used by RecBole, recbole_genrec or model "
                f"'{self.model}'; check their spelling): {', '.join(unknown)}"
            )
        self.unknown_keys = unknown

    def _set_default_parameters(self):
        """RecBole's, with its validation errors as ConfigErrors, then :func:`checks.check_run_values`."""
        with recbole_config_errors():
            super()._set_default_parameters()
        check_run_values(self.final_config_dict)

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
        """RecBole's device set-up; distributed runs go through :func:`compat.init_distributed_device` (gloo on CPU)."""
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()
        from recbole_genrec.compat import init_distributed_device

        init_distributed_device(self.final_config_dict)
