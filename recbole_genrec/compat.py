"""The shims RecBole 1.2.1 needs on today's stack, in one place (:func:`apply`: when a run loads its
dataset or builds its trainer, never on import).

1. Safe checkpoint loading. torch >= 2.6 loads with ``weights_only=True``; RecBole's trainer
   then fails to reload its own best checkpoint, for two reasons: it saves with
   ``pickle_protocol=4`` (whose FRAME opcode torch's safe unpickler rejects), and the
   checkpoint holds ``{"config": Config, ...}``. We save with torch's default protocol (same
   content) and allow-list exactly the classes such a checkpoint holds (our ``Config``, which pickles
   without class references, RecBole's enums, ``torch.device`` and numpy float scalars). Safe loading
   stays on: any other global in a checkpoint is still refused by torch.
   What a model keeps beside its ``state_dict`` (``other_parameter()``: scipy sparse matrices,
   numpy arrays, layer modules, ``defaultdict`` objects) is saved as a safe representation made of
   tensors and plain containers only, and rebuilt on load (``encode_other_parameter`` /
   ``decode_other_parameter``): it needs no allow-listed global at all.
2. CPU distributed training. RecBole hard-codes ``nccl`` + CUDA: ``Config._init_device`` calls
   :func:`init_distributed_device` instead, which picks gloo and CPU without a GPU. RecBole wraps the
   model as ``DistributedDataParallel(model, device_ids=[local_rank])``, which torch rejects for CPU
   modules; on CPU we pass ``device_ids=None``.
3. Graph models on today's scipy. scipy 1.17 (the tested stack) has no private
   ``dok_matrix._update``, which seven RecBole models call to build their adjacency matrix
   (LightGCN, NGCF, GCMC, SpectralCF, NCL, MCCLK, KGIN); where it is missing it is defined as
   scipy's public, bounds-checked ``dok_matrix.update`` (``restore_dok_update``).
4. Preloaded weights (``preload_weight``) come as float32 instead of RecBole's float64, with
   which KSR fails (``get_preload_weight``).

Nothing else in RecBole is patched (DESIGN.md: no monkey-patching beyond this module).
"""

import collections
import os

import numpy as np
import scipy.sparse as sp
import torch
from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import enum_type, set_color

import recbole.data.dataset as _recbole_dataset
import recbole.trainer.trainer as _recbole_trainer

from recbole_genrec.errors import ConfigError
from recbole_genrec.safe_io import atomic_torch_save


def allow_recbole_checkpoints(config_class):
    """Allow torch's safe unpickler a checkpoint's non-tensor classes (its config: a ``config_class``; idempotent)."""
    enums = [
        getattr(enum_type, name)
        for name in ("ModelType", "InputType", "EvaluatorType", "FeatureType", "FeatureSource", "KGDataLoaderState")
        if hasattr(enum_type, name)
    ]
    # RecBole's best_valid_score is a numpy float scalar.
    numpy_scalars = [
        np.core.multiarray.scalar,
        np.dtype,
        *(type(np.dtype(t)) for t in (np.float64, np.float32, np.int64)),
    ]
    torch.serialization.add_safe_globals([config_class, torch.device, *enums, *numpy_scalars])


# ---- other_parameter() as tensors and plain containers -------------------------------------
# A tagged dict stands for one object that torch's safe unpickler cannot build by itself.
ENCODED_TAG = "__recbole_genrec_encoded__"
_SPARSE_FORMATS = ("csr", "csc", "coo", "lil", "dok", "bsr", "dia")
_DEFAULT_FACTORIES = {"list": list, "dict": dict, "set": set, "int": int, "float": float}


def _array_to_tensor(array):
    """A numpy array as a tensor with the same dtype and values, or None if torch has no such dtype."""
    array = np.asarray(array)  # keeps 0-d scalars 0-d (np.ascontiguousarray would make them 1-d)
    try:
        return torch.from_numpy(array if array.flags.c_contiguous else np.ascontiguousarray(array))
    except TypeError:  # object, string, ... arrays: left as they are (torch refuses them on load)
        return None


def _encode_sparse(matrix):
    if matrix.format in ("csr", "csc"):
        parts = {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr}
    else:  # any other format travels as coordinates and is converted back on load
        coo = matrix.tocoo()
        parts = {"data": coo.data, "row": coo.row, "col": coo.col}
    tensors = {name: _array_to_tensor(part) for name, part in parts.items()}
    if matrix.format not in _SPARSE_FORMATS or any(t is None for t in tensors.values()):
        return matrix
    return {
        ENCODED_TAG: "scipy.sparse",
        "format": matrix.format,
        "shape": [int(n) for n in matrix.shape],
        "sparray": isinstance(matrix, sp.sparray),
        **tensors,
    }


def _decode_sparse(code):
    fmt, shape, kind = code["format"], tuple(code["shape"]), "array" if code["sparray"] else "matrix"
    if fmt not in _SPARSE_FORMATS:
        raise ValueError(f"checkpoint holds a sparse matrix of unknown format {fmt!r}")
    arrays = {name: code[name].numpy() for name in ("data", "indices", "indptr", "row", "col") if name in code}
    if fmt in ("csr", "csc"):
        return getattr(sp, f"{fmt}_{kind}")((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
    coo = getattr(sp, f"coo_{kind}")((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
    return coo.asformat(fmt)


def _plain_key(key):
    return key.item() if isinstance(key, np.generic) else key


def encode_other_parameter(value):
    """``value`` (one entry of ``model.other_parameter()``) made of tensors and plain containers.

    scipy sparse matrices become their index/value tensors, numpy arrays (``np.matrix`` too) and
    scalars tensors, ``nn.Module`` values their ``state_dict`` (restored into the live model's module
    on load), ``defaultdict`` a dict plus the name of its factory; lists, tuples and dicts are encoded
    item by item. Anything else is kept as it is (torch refuses it on a safe load, as before).
    """
    if isinstance(value, torch.nn.Module):
        return {ENCODED_TAG: "module", "state_dict": value.state_dict()}
    if sp.issparse(value):
        return _encode_sparse(value)
    if type(value) in (np.ndarray, np.matrix) or isinstance(value, np.generic):
        tensor = _array_to_tensor(value)
        if tensor is None:
            return value
        kind = "scalar" if isinstance(value, np.generic) else type(value).__name__
        return {ENCODED_TAG: "numpy", "kind": kind, "tensor": tensor}
    if isinstance(value, collections.defaultdict):
        names = [n for n, f in _DEFAULT_FACTORIES.items() if f is value.default_factory]
        if not names:
            return value
        items = {_plain_key(k): encode_other_parameter(v) for k, v in value.items()}
        return {ENCODED_TAG: "defaultdict", "factory": names[0], "items": items}
    if type(value) in (dict, collections.OrderedDict):
        return type(value)((_plain_key(k), encode_other_parameter(v)) for k, v in value.items())
    if type(value) in (list, tuple):
        return type(value)(encode_other_parameter(v) for v in value)
    return value


def decode_other_parameter(value):
    """The object ``encode_other_parameter`` stood for (``module`` codes: see ``load_other_parameter``)."""
    if isinstance(value, dict) and isinstance(value.get(ENCODED_TAG), str):
        kind = value[ENCODED_TAG]
        if kind == "scipy.sparse":
            return _decode_sparse(value)
        if kind == "numpy":
            array, kind = value["tensor"].numpy(), value["kind"]
            return array[()] if kind == "scalar" else np.asmatrix(array) if kind == "matrix" else array
        if kind == "defaultdict":
            decoded = collections.defaultdict(_DEFAULT_FACTORIES[value["factory"]])
            decoded.update((k, decode_other_parameter(v)) for k, v in value["items"].items())
            return decoded
        raise ValueError(f"checkpoint holds an encoded {kind!r} where none can be rebuilt")
    if type(value) in (dict, collections.OrderedDict):
        return type(value)((k, decode_other_parameter(v)) for k, v in value.items())
    if type(value) in (list, tuple):
        return type(value)(decode_other_parameter(v) for v in value)
    return value


def encode_other_parameters(parameters):
    """``model.other_parameter()`` for a checkpoint (None stays None)."""
    if parameters is None:
        return None
    return {key: encode_other_parameter(value) for key, value in parameters.items()}


def load_other_parameter(self, para):
    """RecBole's ``AbstractRecommender.load_other_parameter`` for encoded (and plain) values.

    Every path that reloads a checkpoint (``Trainer.evaluate``, ``Trainer.resume_checkpoint``)
    calls it right after ``torch.load``. A module's ``state_dict`` is loaded into the model's
    own module of that name (it is the same object RecBole would have replaced).
    """
    if para is None:
        return
    for key, value in para.items():
        if isinstance(value, dict) and value.get(ENCODED_TAG) == "module":
            module = getattr(self, key, None)
            if not isinstance(module, torch.nn.Module):
                raise ValueError(f"checkpoint holds the state of module '{key}', which {type(self).__name__} lacks")
            module.load_state_dict(value["state_dict"])
        else:
            setattr(self, key, decode_other_parameter(value))


# ---- preloaded weights as float32 --------------------------------------------------------------
_get_preload_weight = _recbole_dataset.Dataset.get_preload_weight


def get_preload_weight(self, field):
    """RecBole's ``Dataset.get_preload_weight`` as float32, the dtype of every model parameter.

    RecBole builds the matrix with ``np.zeros`` (float64); KSR multiplies its relation matrix
    with float32 activations and fails. GRU4RecKG copies it into a float32 embedding anyway.
    """
    weight = _get_preload_weight(self, field)
    return weight.astype(np.float32, copy=False) if weight.dtype == np.float64 else weight


# ---- scipy's dok_matrix._update ---------------------------------------------------------------
def restore_dok_update():
    """Give ``dok_matrix`` back the ``_update`` RecBole's graph models call, where scipy lacks it:
    the old private ``_update(dict)`` is scipy's public, bounds-checked ``update``."""
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = sp.dok_matrix.update


class _DistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    """RecBole's DDP wrapper call, made valid for CPU modules (device_ids=None)."""

    def __init__(self, module, device_ids=None, *args, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = None
        super().__init__(module, device_ids, *args, **kwargs)


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """RecBole's ``Trainer._save_checkpoint`` with torch's default pickle protocol, written atomically,
    and ``other_parameter()`` encoded (``encode_other_parameters``)."""
    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    state = {
        "config": self.config,
        "epoch": epoch,
        "cur_step": self.cur_step,
        "best_valid_score": self.best_valid_score,
        "state_dict": self.model.state_dict(),
        "other_parameter": encode_other_parameters(self.model.other_parameter()),
        "optimizer": self.optimizer.state_dict(),
    }
    atomic_torch_save(state, saved_model_file)  # never a half-written checkpoint
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


def apply(config_class):
    """Install the shims (idempotent): ``utils.create_dataset`` and the plugin trainer call it.

    ``config_class``: the class of the trainer's config (our ``Config``, which pickles without
    class references), the one non-RecBole class a checkpoint holds.
    """
    allow_recbole_checkpoints(config_class)
    _recbole_trainer.Trainer._save_checkpoint = _save_checkpoint
    _recbole_trainer.DistributedDataParallel = _DistributedDataParallel
    AbstractRecommender.load_other_parameter = load_other_parameter
    restore_dok_update()
    _recbole_dataset.Dataset.get_preload_weight = get_preload_weight


def init_distributed_device(config):
    """RecBole's distributed device set-up (``Config._init_device``), with gloo and CPU when no GPU is usable.

    RecBole 1.2.1 hard-codes ``nccl`` and CUDA. ``config`` is the final config dict.
    """
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
    torch.distributed.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        rank=config["local_rank"] + config["offset"],
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
