"""The shims RecBole 1.2.1 needs on today's torch, in one place (:func:`apply`: when a trainer is built).

1. Safe checkpoint loading. torch >= 2.6 loads with ``weights_only=True``; RecBole's trainer
   then fails to reload its own best checkpoint, for two reasons: it saves with
   ``pickle_protocol=4`` (whose FRAME opcode torch's safe unpickler rejects), and the
   checkpoint holds ``{"config": Config, ...}``. We save with torch's default protocol (same
   content) and allow-list exactly the classes such a checkpoint holds (our ``Config``, which pickles
   without class references, RecBole's enums, ``torch.device`` and numpy float scalars). Safe loading
   stays on: any other global in a checkpoint is still refused by torch.
2. CPU distributed training (with 3.). RecBole wraps the model as
   ``DistributedDataParallel(model, device_ids=[local_rank])``, which torch rejects for CPU
   modules; on CPU we pass ``device_ids=None`` (the gloo backend is chosen in ``Config``).

3. Distributed device set-up: RecBole hard-codes ``nccl`` + CUDA; ``Config._init_device``
   calls :func:`init_distributed_device` instead, which picks gloo and CPU without a GPU.

Nothing else in RecBole is patched (DESIGN.md: no monkey-patching beyond this module).
"""

import os

import numpy as np
import torch
from recbole.utils import enum_type, set_color

import recbole.trainer.trainer as _recbole_trainer

from recbole_genrec.errors import ConfigError
from recbole_genrec.safe_io import atomic_torch_save


def checkpoint_safe_globals(config_class):
    """The non-tensor classes a RecBole checkpoint holds (``config_class``: the type of its config)."""
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
    return [config_class, torch.device, *enums, *numpy_scalars]


def allow_recbole_checkpoints(config_class):
    """Register the allow-list with torch's safe unpickler (idempotent)."""
    torch.serialization.add_safe_globals(checkpoint_safe_globals(config_class))


class _DistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    """RecBole's DDP wrapper call, made valid for CPU modules (device_ids=None)."""

    def __init__(self, module, device_ids=None, *args, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = None
        super().__init__(module, device_ids, *args, **kwargs)


def _save_checkpoint(self, epoch, verbose=True, **kwargs):
    """RecBole's ``Trainer._save_checkpoint`` with torch's default pickle protocol, written atomically."""
    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    state = {
        "config": self.config,
        "epoch": epoch,
        "cur_step": self.cur_step,
        "best_valid_score": self.best_valid_score,
        "state_dict": self.model.state_dict(),
        "other_parameter": self.model.other_parameter(),
        "optimizer": self.optimizer.state_dict(),
    }
    atomic_torch_save(state, saved_model_file)  # never a half-written checkpoint
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


def apply(config_class):
    """Install the shims (idempotent). Called when a trainer is built, never on import.

    ``config_class``: the class of the trainer's config (our ``Config``, which pickles without
    class references), the one non-RecBole class a checkpoint holds.
    """
    allow_recbole_checkpoints(config_class)
    _recbole_trainer.Trainer._save_checkpoint = _save_checkpoint
    _recbole_trainer.DistributedDataParallel = _DistributedDataParallel


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
