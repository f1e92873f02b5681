"""MTGRec's whole method in one run (``mt_stage: all``; spec mtgrec.md §4-§5).

``run_single`` hands an MTGRec config to :func:`run_mtgrec` (``recbole_genrec.pipeline``):

1. one dataset and one split (the semantic IDs of every kept tokenizer), shared by every stage;
2. pre-training (``mt_stage: pretrain``): the curriculum over all tokenizers, ``epochs`` epochs
   (RecBole's early stopping and best-validation checkpoint, validation on the latest tokenizer);
3. one fine-tune per candidate tokenizer (``mt_finetune_tokenizers`` / ``mt_finetune_tokenizer_ids``):
   the pre-trained weights, a fresh AdamW with ``mt_finetune_learning_rate``, ``mt_finetune_epochs``
   epochs with ``mt_finetune_warmup_steps`` warm-up, patience ``mt_finetune_stopping_step``, model
   selection on validation NDCG (``valid_metric``) with ``valid_beam_size``;
4. the tokenizer whose fine-tune has the best validation score (the earliest on a tie) is tested
   with ``beam_size``, from its best checkpoint. Test results of the other fine-tunes are never
   computed (no test-set selection).

Each stage is a copy of the config with that stage's keys set; keys given on the command line
are overridden for the fine-tunes only where the fine-tune has its own key (``learning_rate``,
``epochs``, ``stopping_step``, ``warmup_*``). Checkpoints are always written (they are how the
stages hand over weights), as ``<checkpoint_dir>/<run>-pretrain.pth`` and ``<run>-ft<j>.pth``
(``<run>`` = ``MTGRec-<time>-<pid>-<hex>``).

Resume (``--resume=latest|<path>``, the same flag as every run, :mod:`recbole_genrec.trainer.resume`):
the pipeline keeps ``<run>.pipeline.resume.pth`` (the finished stages' results, written after each
stage; removed when the run ends) beside the stages' own resume states. A resumed run skips the
finished stages, continues the interrupted one from its last epoch (bit-identical to an
uninterrupted run when ``save_resume_state`` is on, the default; from the stage's start otherwise)
and runs the rest. ``latest`` (or any file of the run) names the run; its candidate tokenizers
must be this config's.
A stage that never validated (``eval_step`` > its epochs) is validated once after its last epoch
and hands over its last weights.
``train_time_budget`` applies to each stage separately. The result has RecBole's shape (the
chosen fine-tune's validation and test results; seconds and epochs summed over every stage)
plus ``mtgrec``: every stage's validation result, seconds, epochs and the curriculum history.
"""

import copy
import os
import re
import time
from logging import getLogger

from recbole.utils import init_seed, set_color

from recbole_genrec.errors import ConfigError
from recbole_genrec.safe_io import atomic_torch_save, unique_run_name
from recbole_genrec.trainer import trainer_class
from recbole_genrec.trainer.curriculum import MTGRecCurriculum
from recbole_genrec.trainer.resume import (
    RESUME_SUFFIX,
    discard_resume_state,
    find_resume_file,
    load_resume_file,
    resume_from_config,
    resume_state_path,
)
from recbole_genrec.utils import create_dataset, data_preparation, get_model

PIPELINE_STATE = ".pipeline" + RESUME_SUFFIX


def stage_config(config, **values):
    """A copy of ``config`` with ``values`` set (RecBole's final config dict)."""
    out = copy.deepcopy(config)
    for key, value in values.items():
        out[key] = value
    return out


def finetune_config(config, tokenizer, pretrained_path):
    return stage_config(
        config,
        mt_stage="finetune",
        mt_finetune_tokenizer=int(tokenizer),
        mt_pretrained_path=pretrained_path,
        learning_rate=config["mt_finetune_learning_rate"],
        epochs=config["mt_finetune_epochs"],
        stopping_step=config["mt_finetune_stopping_step"],
        warmup_steps=config["mt_finetune_warmup_steps"],
        warmup_ratio=None,
    )


def run_of(path):
    """``<checkpoint_dir>/<run>`` of any file of one pipeline run (its stages' checkpoints and resume states)."""
    name = path[: -len(RESUME_SUFFIX)] if path.endswith(RESUME_SUFFIX) else os.path.splitext(path)[0]
    return re.sub(r"(\.pipeline|-pretrain|-ft\d+)$", "", name)


def start_or_resume(config, candidates):
    """``(run, state)``: a new run and its empty pipeline state, or with ``--resume`` the stopped run's."""
    if not config["resume"]:
        run = os.path.join(config["checkpoint_dir"], unique_run_name(config["model"]))
        return run, {"model": config["model"], "dataset": config["dataset"], "candidates": list(candidates),
                     "num_params": None, "pretrain": None, "finetunes": []}  # fmt: skip
    run = run_of(find_resume_file(config))
    path = run + PIPELINE_STATE
    if not os.path.isfile(path):
        raise ConfigError(
            f"--resume: '{run}' is not an {config['model']} pipeline run (no {os.path.basename(path)}). "
            "Fix: resume a single stage with --mt_stage=pretrain|finetune, or drop --resume."
        )
    state = load_resume_file(path, "cpu")
    if (state["model"], state["dataset"]) != (config["model"], config["dataset"]):
        raise ConfigError(
            f"--resume: '{path}' is a {state['model']} run on {state['dataset']}, this is "
            f"{config['model']} on {config['dataset']}. Fix: resume with the same --model and --dataset."
        )
    if state["candidates"] != list(candidates):
        raise ConfigError(
            f"--resume: the stopped run fine-tunes tokenizers {state['candidates']}, this config "
            f"{list(candidates)} (mt_finetune_tokenizers / mt_finetune_tokenizer_ids). Fix: resume with its settings."
        )
    getLogger().info(set_color("mtgrec", "blue") + f" resuming '{run}': pre-training "
                     f"{'done' if state['pretrain'] else 'to do'}, {len(state['finetunes'])} fine-tune(s) done")
    return run, state


def run_stage(config, train_data, valid_data, path):
    """Build and fit one stage whose best checkpoint is ``path``, continuing its interrupted
    run if ``path``'s resume state is there. Returns ``(trainer, score, result, seconds)``.

    A stage that never validated (``eval_step`` > its epochs) is validated once after its last
    epoch and hands over its last weights.
    """
    resume = resume_state_path(path)
    config["resume"] = resume if os.path.isfile(resume) else None
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = trainer_class(config)(config, model)
    trainer.saved_model_file = path
    resume_from_config(config, trainer, train_data)
    score, result = trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    seconds = trainer.fit_seconds
    if result is None:
        start = time.perf_counter()
        score, result = trainer._valid_epoch(valid_data, show_progress=config["show_progress"])
        trainer.best_valid_score, trainer.best_valid_result = score, result
        trainer._save_checkpoint(trainer.epochs_trained() - 1)
        seconds += time.perf_counter() - start
    return trainer, float(score), result, seconds


def finish_stage(run, state, trainer):
    """Record a finished stage in the pipeline state, then drop the stage's own resume state."""
    atomic_torch_save(state, run + PIPELINE_STATE)
    discard_resume_state(trainer)


def run_mtgrec(config, saved=True):
    """Pre-train, fine-tune per candidate tokenizer, choose on validation, test (module docstring)."""
    from recbole_genrec.quick_start import peak_rss_mb

    logger = getLogger()
    if not config["single_spec"]:
        raise ConfigError("mt_stage: all runs in one process. Fix: run it without nproc/world_size (or run the stages separately).")
    model_class = config.model_class  # MTGRec (or a subclass): its settings checks
    model_class.check_settings(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    n_tok = int(train_data._dataset.item_sids.shape[0])
    candidates = model_class.finetune_candidates(config, n_tok)
    run, state = start_or_resume(config, candidates)
    atomic_torch_save(state, run + PIPELINE_STATE)  # from now on --resume=latest finds this run
    bigger = config["valid_metric_bigger"]

    if state["pretrain"] is None:
        pre_config = stage_config(config, mt_stage="pretrain")
        trainer, score, result, seconds = run_stage(pre_config, train_data, valid_data, f"{run}-pretrain.pth")
        logger.info(trainer.model)
        state["num_params"] = sum(p.numel() for p in trainer.model.parameters())
        state["pretrain"] = {
            "best_valid_score": score,
            "best_valid_result": result,
            "epochs_run": trainer.epochs_trained(),
            "train_seconds": seconds,
            "checkpoint": trainer.saved_model_file,
            "curriculum": trainer.mtgrec_history if trainer.hook(MTGRecCurriculum) else [],
        }
        finish_stage(run, state, trainer)
        logger.info(set_color("mtgrec", "blue") + f" pre-training done ({trainer.epochs_trained()} epochs, {seconds:.1f}s); "
                    f"fine-tuning on tokenizers {candidates} of {n_tok}")
        del trainer
    pretrained = state["pretrain"]["checkpoint"]

    for j in candidates[len(state["finetunes"]):]:
        ft_config = finetune_config(config, j, pretrained)
        trainer, score, result, seconds = run_stage(ft_config, train_data, valid_data, f"{run}-ft{j}.pth")
        state["finetunes"].append(
            {"tokenizer": j, "best_valid_score": score, "best_valid_result": result,
             "epochs_run": trainer.epochs_trained(), "train_seconds": seconds, "checkpoint": trainer.saved_model_file}
        )  # fmt: skip
        finish_stage(run, state, trainer)
        logger.info(set_color("mtgrec", "blue") + f" fine-tune on tokenizer {j}: best valid {score:.4f} ({trainer.epochs_trained()} epochs, {seconds:.1f}s)")
        del trainer

    finetunes = state["finetunes"]
    chosen = (max if bigger else min)(finetunes, key=lambda f: f["best_valid_score"])  # the earliest on a tie
    ft_config = finetune_config(config, chosen["tokenizer"], pretrained)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(ft_config, train_data._dataset).to(config["device"])
    start = time.perf_counter()
    test_result = trainer_class(ft_config)(ft_config, model).evaluate(
        test_data, load_best_model=True, model_file=chosen["checkpoint"], show_progress=config["show_progress"]
    )
    test_seconds = time.perf_counter() - start
    os.remove(run + PIPELINE_STATE)  # finished: nothing left to resume
    logger.info(set_color("mtgrec", "blue") + f" chosen on validation: tokenizer {chosen['tokenizer']} ({chosen['best_valid_score']:.4f})")
    logger.info(set_color("best valid ", "yellow") + f": {chosen['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    pretrain = state["pretrain"]
    return {
        "best_valid_score": chosen["best_valid_score"],
        "valid_score_bigger": bigger,
        "best_valid_result": chosen["best_valid_result"],
        "test_result": test_result,
        "train_seconds": pretrain["train_seconds"] + sum(f["train_seconds"] for f in finetunes),
        "test_seconds": test_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "num_params": state["num_params"],
        "epochs_run": pretrain["epochs_run"] + sum(f["epochs_run"] for f in finetunes),
        "mtgrec": {"pretrain": pretrain, "finetunes": finetunes, "chosen_tokenizer": chosen["tokenizer"]},
    }
