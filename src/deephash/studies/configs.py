"""Old import places: the configurations of the studies and of ``index``/``search`` live
in :mod:`deephash.command_configs` (torch-free, below :mod:`deephash.validation`), the
hashing methods' training configurations in :mod:`deephash.training.methods`.
"""

from __future__ import annotations

from deephash.command_configs import (
    DEFAULT_VARIANTS,
    HashConfig,
    HashingConfig,
    IndexConfig,
    LossStudyConfig,
    MinerStudyConfig,
    PackConfig,
    ScheduleStudyConfig,
    SearchConfig,
    SelectMarginConfig,
    check_index,
)
from deephash.training.methods import dtsh_method, dtsh_training, zhuang_training

__all__ = ["DEFAULT_VARIANTS", "HashConfig", "HashingConfig", "IndexConfig", "LossStudyConfig",
           "MinerStudyConfig", "PackConfig", "ScheduleStudyConfig", "SearchConfig",
           "SelectMarginConfig", "check_index", "dtsh_method", "dtsh_training", "zhuang_training"]
