"""ONNX Runtime on the CPU: the backbone exported to ONNX by PyTorch.

PyTorch's TorchScript-based exporter (it needs the ``onnx`` package) traces the backbone at
the static input side with a dynamic batch size; ONNX Runtime's CPU provider runs it in
float32 with all graph optimisations, on as many threads as torch uses.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import Backbone
from deephash.data.transforms import normalise
from deephash.runtimes.base import ExportError
from deephash.runtimes.exports import ExportKey, ExportStore

OPSET = 17


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Within the block, standard output and error (file descriptors 1 and 2) go nowhere:
    torch's exporter prints its whole graph (from C++) before raising on an operator it
    cannot export; the error says what matters in one line."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def _export(backbone: Backbone, image_size: int, folder: Path) -> None:
    example = torch.zeros(2, 3, image_size, image_size)
    module = backbone.exported(image_size).cpu().eval()
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet():
            warnings.simplefilter("ignore")  # the legacy-exporter notice and tracer warnings
            torch.onnx.export(module, (example,), str(folder / "model.onnx"),
                              dynamo=False, input_names=["images"], output_names=["features"],
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                              opset_version=OPSET)
    except Exception as failure:  # torch.onnx.errors.* and friends: one line for the user
        raise ExportError(OnnxRuntime.name, backbone.name, image_size, failure) from None


class OnnxRuntime:
    """The backbone as an ONNX Runtime CPU session."""

    name = "onnxruntime"

    def __init__(self, backbone: Backbone, image_size: int, precision: str = "fp32",
                 exports: ExportStore | None = None, device: torch.device | None = None) -> None:
        import onnxruntime as ort

        self.precision = precision
        self.device = torch.device("cpu")
        self.mean, self.std = backbone.preprocessing.mean, backbone.preprocessing.std
        key = None if backbone.weights_id is None else ExportKey(
            backbone.name, backbone.weights_id, image_size, self.name,
            f"torch {torch.__version__}, onnxruntime {ort.__version__}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only

        def load(folder: Path) -> Any:
            return ort.InferenceSession(str(folder / "model.onnx"), options,
                                        providers=["CPUExecutionProvider"])

        self.session = (exports or ExportStore(None)).get_or_export(
            key, lambda folder: _export(backbone, image_size, folder), load)

    def __call__(self, pixels: torch.Tensor) -> np.ndarray:
        """``(B, 3, H, W)`` uint8 -> ``(B, D)`` float32 (normalised by torch first)."""
        batch = normalise(pixels.cpu(), self.mean, self.std).numpy()
        return np.asarray(self.session.run(None, {"images": batch})[0], dtype=np.float32)
