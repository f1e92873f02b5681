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
stages hand over weights), as ``<checkpoint_dir>/MTGRec-<time>-pretrain.pth`` and ``-ft<j>.pth``.
A stage that never validated (``eval_step`` > its epochs) is validated once after its last epoch
and hands over its last weights.
``train_time_budget`` applies to each stage separately. The result has RecBole's shape (the
chosen fine-tune's validation and test results; seconds and epochs summed over every stage)
plus ``mtgrec``: every stage's validation result, seconds, epochs and the curriculum history.
"""

import copy
import os
import time
from logging import getLogger

from recbole.utils import get_local_time, init_seed, set_color

from recbole_genrec.errors import ConfigError
from recbole_genrec.trainer import trainer_class
from recbole_genrec.trainer.curriculum import MTGRecCurriculum
from recbole_genrec.utils import create_dataset, data_preparation, get_model


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


def _stage(config, train_data, path):
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = trainer_class(config)(config, model)
    trainer.saved_model_file = path
    return model, trainer


def _fit(trainer, config, train_data, valid_data):
    start = time.perf_counter()
    score, result = trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
    if result is None:  # never validated (eval_step > epochs): validate and hand over the last weights
        score, result = trainer._valid_epoch(valid_data, show_progress=config["show_progress"])
        trainer.best_valid_score, trainer.best_valid_result = score, result
        trainer._save_checkpoint(trainer.epochs_trained() - 1)
    return score, result, time.perf_counter() - start


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
    stem = os.path.join(config["checkpoint_dir"], f"{config['model']}-{get_local_time()}")
    bigger = config["valid_metric_bigger"]

    pre_config = stage_config(config, mt_stage="pretrain")
    model, trainer = _stage(pre_config, train_data, f"{stem}-pretrain.pth")
    logger.info(model)
    num_params = sum(p.numel() for p in model.parameters())
    pre_score, pre_result, pre_seconds = _fit(trainer, pre_config, train_data, valid_data)
    pretrained = trainer.saved_model_file
    pretrain = {
        "best_valid_score": float(pre_score),
        "best_valid_result": pre_result,
        "epochs_run": trainer.epochs_run,
        "train_seconds": pre_seconds,
        "checkpoint": pretrained,
        "curriculum": trainer.mtgrec_history if trainer.hook(MTGRecCurriculum) else [],
    }
    logger.info(set_color("mtgrec", "blue") + f" pre-training done ({trainer.epochs_run} epochs, {pre_seconds:.1f}s); "
                f"fine-tuning on tokenizers {candidates} of {n_tok}")
    del model, trainer

    finetunes, best, best_trainer = [], None, None
    for j in candidates:
        ft_config = finetune_config(config, j, pretrained)
        _, trainer = _stage(ft_config, train_data, f"{stem}-ft{j}.pth")
        score, result, seconds = _fit(trainer, ft_config, train_data, valid_data)
        finetunes.append(
            {"tokenizer": j, "best_valid_score": float(score), "best_valid_result": result,
             "epochs_run": trainer.epochs_run, "train_seconds": seconds, "checkpoint": trainer.saved_model_file}
        )
        logger.info(set_color("mtgrec", "blue") + f" fine-tune on tokenizer {j}: best valid {score:.4f} ({trainer.epochs_run} epochs, {seconds:.1f}s)")
        if best is None or (score > best if bigger else score < best):
            best, best_trainer, chosen = score, trainer, finetunes[-1]
        else:
            del trainer

    start = time.perf_counter()
    test_result = best_trainer.evaluate(test_data, load_best_model=True, show_progress=config["show_progress"])
    test_seconds = time.perf_counter() - start
    logger.info(set_color("mtgrec", "blue") + f" chosen on validation: tokenizer {chosen['tokenizer']} ({best:.4f})")
    logger.info(set_color("best valid ", "yellow") + f": {chosen['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "best_valid_score": chosen["best_valid_score"],
        "valid_score_bigger": bigger,
        "best_valid_result": chosen["best_valid_result"],
        "test_result": test_result,
        "train_seconds": pre_seconds + sum(f["train_seconds"] for f in finetunes),
        "test_seconds": test_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "num_params": num_params,
        "epochs_run": pretrain["epochs_run"] + sum(f["epochs_run"] for f in finetunes),
        "mtgrec": {"pretrain": pretrain, "finetunes": finetunes, "chosen_tokenizer": chosen["tokenizer"]},
    }
