"""Models whose one command is several training runs (MTGRec: pre-train, fine-tunes, selection).

A model class that subclasses :class:`RunsStages` and returns a callable from
:meth:`RunsStages.stage_pipeline` for a config gets its whole run from that callable:
``quick_start.run_single`` calls ``pipeline(config, saved)`` after the config and the logger are
set up, and returns its result, which must have RecBole's shape (``best_valid_score``,
``valid_score_bigger``, ``best_valid_result``, ``test_result``, plus the comparison command's
``train_seconds``, ``test_seconds``, ``peak_rss_mb``, ``num_params``, ``epochs_run``).
"""


class RunsStages:
    """Mixin for models with a multi-stage run."""

    @classmethod
    def stage_pipeline(cls, config):
        """The callable ``(config, saved) -> result dict`` running every stage, or None for one ordinary run."""
        return None


def staged_run(config):
    """``config``'s model's stage pipeline, or None (every model that is not a :class:`RunsStages`)."""
    model_class = getattr(config, "model_class", None)
    if isinstance(model_class, type) and issubclass(model_class, RunsStages):
        return model_class.stage_pipeline(config)
    return None
