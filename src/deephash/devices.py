"""Choosing the torch device, and the decoding workers that feed it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from deephash.errors import ConfigError
from deephash.threads import core_share


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


#: decoding workers at most, for a model on a GPU
MAX_GPU_WORKERS = 8


def decoding_workers(requested: int | None, device: torch.device) -> int:
    """DataLoader worker processes that decode images for a model on ``device``:
    ``requested`` when given, else none for a model on the CPU and one per spare core (at
    most :data:`MAX_GPU_WORKERS`) for one on a GPU; under torchrun, one per spare core of
    this process's share of the machine (:func:`deephash.threads.core_share`).

    A model on the CPU keeps every core busy (OpenVINO and PyTorch both run on all of
    them); decoding processes only compete with it, and a parallel forward pass waits for
    its slowest thread. Measured on 2 cores (benchmarks/results/extraction.json): decoding
    in the main process between batches keeps about 0.96-1.0x of OpenVINO's bare forward
    rate, one or two workers 0.6-0.7x.
    """
    if requested is not None:
        return requested
    if device.type == "cpu":
        return 0
    return max(1, min(MAX_GPU_WORKERS, core_share(os.cpu_count() or 2) - 1))


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
