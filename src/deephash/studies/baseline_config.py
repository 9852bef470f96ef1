"""The shared configuration pieces, now in :mod:`deephash.pipeline.config` (torch-free);
re-exported here under their old names."""

from deephash.pipeline.config import (
    BackboneConfig,
    BaselineConfig,
    DataConfig,
    EvalConfig,
    ExtractionConfig,
)

__all__ = ["BackboneConfig", "BaselineConfig", "DataConfig", "EvalConfig", "ExtractionConfig"]
