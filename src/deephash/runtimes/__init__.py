"""Runtimes for frozen feature extraction behind one registry: ``build_runtime(name, ...)``.

``torch`` (PyTorch eager, CPU or CUDA), ``openvino`` and ``onnxruntime`` (CPU) compute the
same float32 features (within 1e-5 relative, tests/test_runtimes.py); ``auto`` picks the
fastest installed one on the CPU, and torch on CUDA or for a few hundred images, where an
export would cost more than it saves (:func:`resolve_runtime`). Exported
models are cached under the cache folder (:mod:`deephash.runtimes.exports`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from deephash.backbones import Backbone
from deephash.registries import PRECISIONS, RUNTIME_CHOICES, RUNTIMES
from deephash.runtimes.base import (
    AUTO_MIN_IMAGES,
    AUTO_ORDER,
    RUNTIME_INFO,
    ExportError,
    Runtime,
    check_runtime,
    is_installed,
    resolve_runtime,
)
from deephash.runtimes.exports import ExportStore

log = logging.getLogger(__name__)


def build_runtime(name: str, backbone: Backbone, image_size: int, *, precision: str = "fp32",
                  cache_dir: Path | None = None, device: torch.device | None = None,
                  n_images: int | None = None) -> Runtime:
    """The runtime ``name`` (or ``auto``'s choice for ``n_images`` image-views) for
    ``backbone`` at ``image_size`` px.

    Raises ``ConfigError`` when it is not installed or does not compute in ``precision``,
    :class:`ExportError` when it cannot export the backbone (``auto`` then uses torch).
    Exports are cached under ``cache_dir`` (``None``: not kept).
    """
    device = device or torch.device("cpu")
    chosen = resolve_runtime(name, precision, device.type, n_images)
    check_runtime(chosen, precision)
    try:
        return RUNTIMES.create(chosen, backbone, image_size, precision,
                               ExportStore(cache_dir), device)
    except ExportError as failure:
        if name != "auto":
            raise
        log.warning("%s; --runtime auto falls back to torch", failure)
        return RUNTIMES.create("torch", backbone, image_size, precision, None, device)


def relative_difference(features: np.ndarray, reference: np.ndarray) -> float:
    """``max |features - reference| / max |reference|``: how far a runtime's features are
    from the reference ones, relative to their scale."""
    difference = float(np.abs(features - reference).max())
    scale = float(np.abs(reference).max())
    return difference / scale if scale > 0 else difference


__all__ = ["AUTO_MIN_IMAGES", "AUTO_ORDER", "PRECISIONS", "RUNTIMES", "RUNTIME_CHOICES",
           "RUNTIME_INFO", "ExportError", "ExportStore", "Runtime", "build_runtime",
           "check_runtime", "is_installed", "relative_difference", "resolve_runtime"]
