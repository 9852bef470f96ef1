"""deephash: image embeddings and binary codes with triplet networks, and retrieval with them.

The public Python API is what ``__all__`` lists (docs/api.md); every other module is
internal. Importing ``deephash`` loads neither torch nor numpy: each name is imported from
its module when first used (:func:`__getattr__`), so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deephash.omp import prefer_passive

prefer_passive()  # before anything loads torch: OpenMP reads it once (deephash.omp says why)

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    # losses and miners, called as pytorch-metric-learning's are
    "create_loss": "deephash.losses",
    "create_miner": "deephash.miners",
    "batch_loss": "deephash.losses",
    "LOSSES": "deephash.registries",
    "MINERS": "deephash.registries",
    "BatchLoss": "deephash.losses",
    "LossOutput": "deephash.losses",
    "Miner": "deephash.miners",
    # a trained model
    "load": "deephash.inference",
    "ImageEmbedder": "deephash.inference",
    # retrieval metrics
    "mean_average_precision": "deephash.metrics.scores",
    "precision_at_k": "deephash.metrics.scores",
    "evaluate_retrieval": "deephash.metrics.evaluate",
    "evaluate_codes": "deephash.metrics.evaluate_codes",
    # errors
    "DeephashError": "deephash.errors",
    "ConfigError": "deephash.errors",
    "DataError": "deephash.errors",
}

__all__ = [
    "LOSSES", "MINERS", "BatchLoss", "ConfigError", "DataError", "DeephashError",
    "ImageEmbedder", "LossOutput", "Miner", "__version__", "batch_loss", "create_loss",
    "create_miner", "evaluate_codes", "evaluate_retrieval", "load", "mean_average_precision",
    "precision_at_k",
]

if TYPE_CHECKING:
    from deephash.errors import ConfigError, DataError, DeephashError
    from deephash.inference import ImageEmbedder, load
    from deephash.losses import BatchLoss, LossOutput, batch_loss, create_loss
    from deephash.metrics.evaluate import evaluate_retrieval
    from deephash.metrics.evaluate_codes import evaluate_codes
    from deephash.metrics.scores import mean_average_precision, precision_at_k
    from deephash.miners import Miner, create_miner
    from deephash.registries import LOSSES, MINERS


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (then kept here)."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'deephash' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
