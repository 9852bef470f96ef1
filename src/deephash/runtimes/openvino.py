"""OpenVINO on the CPU: the backbone converted from PyTorch to OpenVINO's IR.

``openvino.convert_model`` traces the backbone at the static input side (TensorFlow
"same" padding, as in EfficientNet-Lite, is computed from it) with a dynamic batch size;
the IR is saved uncompressed (float32 weights, not OpenVINO's default float16) and
compiled with ``INFERENCE_PRECISION_HINT`` float32, or bfloat16 for ``--precision bf16``
(OpenVINO's own default on CPUs with bfloat16 units, which it would otherwise choose
silently). The compiled model takes uint8 pixels: OpenVINO's preprocessing steps, added at
load time (the cached export stays the backbone alone), convert them to float32 and
normalise them inside the graph, in the order torchvision does (``/ 255``, ``- mean``,
``/ std``), on OpenVINO's threads and without a float32 copy of the batch.
"""

from __future__ import annotations

import contextlib
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import Backbone
from deephash.runtimes.base import ExportError
from deephash.runtimes.exports import ExportKey, ExportStore

_HINTS = {"fp32": "f32", "bf16": "bf16"}


@contextlib.contextmanager
def _without_telemetry() -> Iterator[None]:
    """Within the block, ``openvino_telemetry`` cannot be imported.

    Importing openvino starts its model converter's usage telemetry, which writes a client
    id under ``~/intel`` and sends events unless the user opted out; a library must do
    neither behind its user's back. Without the package, openvino uses its no-op stub.
    """
    masked = "openvino_telemetry" not in sys.modules
    if masked:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if masked:
            sys.modules.pop("openvino_telemetry", None)


def import_openvino() -> types.ModuleType:
    with _without_telemetry():
        import openvino

    return openvino


def _export(backbone: Backbone, image_size: int, folder: Path) -> None:
    ov = import_openvino()
    example = torch.zeros(2, 3, image_size, image_size)
    module = backbone.exported(image_size).cpu().eval()
    try:
        with _without_telemetry(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
            model = ov.convert_model(module, example_input=example,
                                     input=[ov.PartialShape([-1, 3, image_size, image_size])])
    except Exception as failure:  # OpConversionFailure and friends: one line for the user
        raise ExportError(OpenVinoRuntime.name, backbone.name, image_size, failure) from None
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)


def _taking_pixels(ov: types.ModuleType, model: Any, mean: tuple[float, ...],
                   std: tuple[float, ...]) -> Any:
    """``model`` (float32 NCHW input) with uint8 NCHW input, normalised in the graph."""
    from openvino.preprocess import PrePostProcessor

    steps = PrePostProcessor(model)
    steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NCHW"))
    steps.input().model().set_layout(ov.Layout("NCHW"))
    steps.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0) \
        .mean(list(mean)).scale(list(std))
    return steps.build()


class OpenVinoRuntime:
    """The backbone compiled by OpenVINO for the CPU."""

    name = "openvino"

    def __init__(self, backbone: Backbone, image_size: int, precision: str = "fp32",
                 exports: ExportStore | None = None, device: torch.device | None = None) -> None:
        ov = import_openvino()
        self.precision = precision
        self.device = torch.device("cpu")
        self.image_size = image_size
        key = None if backbone.weights_id is None else ExportKey(
            backbone.name, backbone.weights_id, image_size, self.name,
            f"torch {torch.__version__}, openvino {ov.get_version()}")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}

        pre = backbone.preprocessing

        def load(folder: Path) -> Any:
            model = _taking_pixels(ov, core.read_model(str(folder / "model.xml")), pre.mean,
                                   pre.std)
            return core.compile_model(model, "CPU", config)

        self.model = (exports or ExportStore(None)).get_or_export(
            key, lambda folder: _export(backbone, image_size, folder), load)

    def __call__(self, pixels: torch.Tensor) -> np.ndarray:
        """``(B, 3, H, W)`` uint8 -> ``(B, D)`` float32."""
        batch = np.ascontiguousarray(pixels.cpu().numpy(), dtype=np.uint8)
        return np.array(self.model(batch)[0], dtype=np.float32)
