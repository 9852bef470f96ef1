"""Errors a user can act on. Each message names the problem and the fix."""


class DeephashError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class DataError(DeephashError):
    """The data set is missing, malformed or unreadable."""


class ConfigError(DeephashError):
    """A configuration value or command-line option is invalid."""


class TrainingError(DeephashError):
    """Training cannot go on (a loss that is no longer a finite number)."""


class WeightsError(DeephashError):
    """Pretrained weights are unavailable (offline without a local file, or a bad file)."""
