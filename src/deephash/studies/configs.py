"""The hashing methods' training configurations (``HASHING_METHODS``,
:mod:`deephash.registries`), and the configurations of the studies and of
``index``/``search``, which now live in :mod:`deephash.command_configs` (torch-free, below
:mod:`deephash.validation`) and keep this import place.
"""

from __future__ import annotations

import dataclasses

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
    dtsh_training,
)
from deephash.training.config import TrainingConfig

__all__ = ["DEFAULT_VARIANTS", "HashConfig", "HashingConfig", "IndexConfig", "LossStudyConfig",
           "MinerStudyConfig", "PackConfig", "ScheduleStudyConfig", "SearchConfig",
           "SelectMarginConfig", "check_index", "dtsh_method", "dtsh_training", "zhuang_training"]


def dtsh_method(base: TrainingConfig) -> TrainingConfig:
    """DTSH (Wang, Shi & Kitani 2016) trains the hash head per batch with the configured
    loss and miner (:func:`dtsh_training` gives its defaults): ``base`` as it is."""
    return base


def zhuang_training(base: TrainingConfig) -> TrainingConfig:
    """Zhuang et al.: the head's logits are trained to predict inferred bits (no tanh, no
    quantisation term); ``margin`` is in bits and ``epochs`` counts stages."""
    return dataclasses.replace(base, procedure="zhuang", activation="none", regularizers=())
