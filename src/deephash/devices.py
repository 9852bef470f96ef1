"""Choosing the torch device."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from deephash.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use "
                          "--device cpu or auto")
    return device


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Within the block, CUDA convolutions and matrix products compute in true float32.

    PyTorch lets cuDNN use TF32 (10-bit mantissa) for float32 convolutions by default: on an
    H200 that moved EfficientNet-Lite0 features by up to 0.9 % from the CPU's (relative
    norm), so cached features would depend on the device that filled the cache.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
