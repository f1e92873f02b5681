"""``run_recbole_genrec``: RecBole's ``run``/``run_recbole`` for plugin and RecBole models.

Our own copy of the quick-start flow: ``recbole.quick_start`` imports ray, which breaks on
this stack. Same steps, same logs, same ``saved/`` checkpoints; the returned dict is
RecBole's (``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
``test_result``) plus ``train_seconds``, ``test_seconds``, ``peak_rss_mb`` and
``num_params`` for the comparison command. RecBole's FLOPs estimate (thop) is not run: it
only feeds a log line and fails on encoder-decoder models.
"""

import os
import resource
import sys
import time
from logging import getLogger

import torch
import torch.distributed as dist
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_genrec.config import Config
from recbole_genrec.trainer.resume import discard_resume_state, resume_from_config
from recbole_genrec.pipeline import staged_run
from recbole_genrec.trainer import trainer_class
from recbole_genrec.utils import create_dataset, data_preparation, get_model


ONEDNN_PRIMITIVE_CACHE = 128  # entries (oneDNN's default: 1024); see bound_onednn_primitive_cache


def bound_onednn_primitive_cache():
    """Cap oneDNN's primitive cache at ``ONEDNN_PRIMITIVE_CACHE`` entries, unless the user set
    ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` (their value wins).

    oneDNN (PyTorch's CPU kernels for bf16 matrix products) keeps one compiled primitive per
    distinct shape, 1024 by default. Length-bucketed generative training meets hundreds of shapes,
    and the cache held gigabytes: a TIGER CPU-preset run on office peaked at 3.0 GB after 4 epochs
    against 1.9 GB capped, with the same losses and epoch time (``benchmarks/results/onednn_cache.md``).
    oneDNN reads the variable when it creates its first primitive, so this runs before any model work.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_PRIMITIVE_CACHE))


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_recbole_genrec(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
    argv=None,
):
    """Train ``model`` on ``dataset`` and evaluate it on the test split (RecBole's ``run``).

    ``nproc``/``world_size`` > 1 runs RecBole's distributed mode (DDP; gloo on CPU). ``argv``:
    the ``--key=value`` overrides to read (default: this process's command line, as RecBole).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if nproc == 1 and world_size <= 0:
        return run_single(model, dataset, config_file_list, config_dict, saved, argv)
    import torch.multiprocessing as mp

    world_size = nproc if world_size == -1 else world_size
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(config_dict or {}, world_size=world_size, ip=ip, port=port, nproc=nproc, offset=group_offset)
    args = (model, dataset, config_file_list, config_dict, saved, queue, argv)
    mp.spawn(_run_rank, args=args, nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_rank(rank, model, dataset, config_file_list, config_dict, saved, queue, argv):
    config_dict = dict(config_dict, local_rank=rank)
    result = run_single(model, dataset, config_file_list, config_dict, saved, argv)
    if rank == 0:
        queue.put(result)


def prepare_training(config, dataset):
    """Split ``dataset``, then the seeded model and its trainer: ``(train, valid, test, model, trainer)``.

    RecBole's order: the seed is reset after the split so the model's initial weights do not
    depend on how much randomness the split used. ``dataset`` is consumed (RecBole's
    ``build()`` mutates it): create one per run.
    """
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = trainer_class(config)(config, model)
    resume_from_config(config, trainer, train_data)  # --resume: continue that run instead
    return train_data, valid_data, test_data, model, trainer


def run_single(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, argv=None):
    """One process: config → dataset → split → model → fit → test (RecBole's ``run_recbole``)."""
    bound_onednn_primitive_cache()
    config = Config(model, dataset, config_file_list, config_dict, argv=argv)
    init_seed(config["seed"], config["reproducibility"])
    # RecBole's ensure_dir (exists-then-makedirs) races between DDP ranks: create them first
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    init_logger(config)
    logger = getLogger()
    logger.info(config._argv)
    logger.info(config)
    pipeline = staged_run(config)
    if pipeline is not None:  # a model whose one command is several runs (MTGRec: recbole_genrec/pipeline.py)
        return pipeline(config, saved)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data, model, trainer = prepare_training(config, dataset)
    logger.info(model)
    if not config["single_spec"]:  # every rank reloads the checkpoint rank 0 writes (named by local time)
        path = [trainer.saved_model_file]
        dist.broadcast_object_list(path, src=0)
        trainer.saved_model_file = path[0]

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"]
    )
    if not config["single_spec"]:
        dist.barrier()  # rank 0 has written the best checkpoint before anyone reloads it
    start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    test_seconds = time.perf_counter() - start
    discard_resume_state(trainer)  # finished: nothing left to resume
    if config["save_predictions"] and config["local_rank"] == 0:  # per-instance top-N, valid + test
        from recbole_genrec.analysis.predictions import save_from_run

        logger.info(f"predictions saved to {save_from_run(config, model, train_data, valid_data, test_data)}")

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")

    if not config["single_spec"]:
        dist.destroy_process_group()
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "train_seconds": trainer.fit_seconds,  # a resumed run's included
        "test_seconds": test_seconds,
        "peak_rss_mb": peak_rss_mb(),
        # RecBole's LightGBM/XGBoost models are boosters, not torch modules
        "num_params": sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else None,
        "epochs_run": trainer.epochs_trained(),
        "valid_curve": trainer.valid_curve,
    }
