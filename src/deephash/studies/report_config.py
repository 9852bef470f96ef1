"""``deephash report``'s options, now in :mod:`deephash.command_configs` (torch-free,
below :mod:`deephash.validation`); re-exported here under the old name."""

from deephash.command_configs import ReportConfig

__all__ = ["ReportConfig"]
