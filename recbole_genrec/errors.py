"""Errors a user causes (command line, config files, data). CLIs print them without a traceback.

Every message names the key or file at fault and the fix.
"""


class UserError(Exception):
    """Base class: a mistake in the command, the config or the data, not a bug."""


class ConfigError(UserError, ValueError):
    """A config value or config file that cannot be used."""


class UnknownModelError(UserError, ValueError):
    """``--model`` names no plugin model and no RecBole model."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset folder or its ``.inter`` file is missing."""


class DataFileError(UserError, ValueError):
    """A dataset file (``.inter``, ``.item``) whose content cannot be used as it is."""
