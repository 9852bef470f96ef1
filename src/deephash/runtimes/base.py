"""The runtime contract: a frozen backbone compiled for fast inference.

A runtime is built from ``(backbone, image_size, precision, exports, device)`` and called on
``(B, 3, H, W)`` uint8 pixel batches (``H = W = image_size``, resized and cropped by
:meth:`TransformSpec.build_pixels`); it normalises them as the backbone's preprocessing
asks (:func:`deephash.data.transforms.normalise`, or inside the compiled model) and returns
the ``(B, D)`` float32 features the backbone would. uint8 batches are a quarter of float32's
bytes to decode into, move between processes, mirror and copy. Only
torch runs on CUDA; the others run on the CPU whatever the device (which then steers
training alone). What each runtime needs installed and which precisions it computes in is
declared here (without importing it), so that options are checked before any work starts.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from deephash.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch


class Runtime(Protocol):
    """``(B, 3, H, W)`` uint8 pixels -> ``(B, D)`` float32 numpy features."""

    name: str
    precision: str
    device: torch.device

    def __call__(self, pixels: torch.Tensor) -> np.ndarray: ...


class ExportError(ConfigError):
    """A backbone that a runtime cannot export (an operator it lacks at this input size)."""

    def __init__(self, runtime: str, backbone: str, image_size: int, failure: BaseException):
        lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
        reason = lines[0].split(". ")[0].rstrip(".") if lines else type(failure).__name__
        super().__init__(f"--runtime {runtime} cannot export {backbone} at {image_size} px "
                         f"({reason}); use --runtime torch or another size")


@dataclass(frozen=True)
class RuntimeInfo:
    """What a runtime needs and serves.

    Attributes:
        modules: top-level modules that must be importable (the runtime and its exporter).
        pip: what to install when one is missing.
        precisions: the ``--precision`` values it computes in.
    """

    modules: tuple[str, ...]
    pip: str
    precisions: tuple[str, ...]


RUNTIME_INFO: dict[str, RuntimeInfo] = {
    "torch": RuntimeInfo(("torch",), "torch", ("fp32", "bf16")),
    "openvino": RuntimeInfo(("openvino",), "openvino", ("fp32", "bf16")),
    "onnxruntime": RuntimeInfo(("onnxruntime", "onnx"), "'deephash[onnxruntime]' (onnxruntime "
                               "and onnx)", ("fp32",)),
}

#: the order ``--runtime auto`` tries on the CPU, fastest first (benchmarks/results/
#: extraction.json: OpenVINO, then ONNX Runtime, then PyTorch eager)
AUTO_ORDER = ("openvino", "onnxruntime", "torch")
#: ``auto`` keeps PyTorch for fewer image-views than this: exporting a backbone takes
#: 5-15 s on 2 cores, more than a faster runtime saves on a few hundred images
AUTO_MIN_IMAGES = 2000


def is_installed(runtime: str) -> bool:
    """Whether every module ``runtime`` needs can be imported (without importing it)."""
    return all(_findable(module) for module in RUNTIME_INFO[runtime].modules)


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_runtime(runtime: str, precision: str) -> None:
    """Raise ``ConfigError`` unless ``runtime`` is installed and computes in ``precision``."""
    info = RUNTIME_INFO[runtime]
    if not is_installed(runtime):
        missing = next(m for m in info.modules if not _findable(m))
        raise ConfigError(f"--runtime {runtime}: package {missing} is not installed; pip "
                          f"install {info.pip}, or use --runtime torch")
    if precision not in info.precisions:
        serving = [name for name, other in RUNTIME_INFO.items() if precision in other.precisions]
        raise ConfigError(f"--runtime {runtime} computes in {', '.join(info.precisions)} only, "
                          f"not {precision}; use --runtime {' or '.join(serving)}")


def resolve_runtime(name: str, precision: str, device_type: str,
                    n_images: int | None = None) -> str:
    """``auto`` -> torch on CUDA or for fewer than :data:`AUTO_MIN_IMAGES` image-views to
    compute (``n_images``), else the first installed runtime of :data:`AUTO_ORDER` that
    computes in ``precision``; any other name as given."""
    if name != "auto":
        return name
    if device_type != "cpu" or (n_images is not None and n_images < AUTO_MIN_IMAGES):
        return "torch"
    return next(runtime for runtime in AUTO_ORDER
                if precision in RUNTIME_INFO[runtime].precisions and is_installed(runtime))

