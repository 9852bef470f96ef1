"""PyTorch eager mode: the reference runtime, and the one that runs on CUDA."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from deephash.backbones import Backbone
from deephash.data.transforms import normalise
from deephash.devices import full_float32
from deephash.runtimes.exports import ExportStore


class TorchRuntime:
    """The backbone itself, in eval mode under ``torch.inference_mode`` on ``device``.

    float32 turns TF32 off on CUDA (:func:`deephash.devices.full_float32`), so features do
    not depend on the device; ``bf16`` runs under ``torch.autocast`` (bfloat16 matrix
    products and convolutions, float32 elsewhere).
    """

    name = "torch"

    def __init__(self, backbone: Backbone, image_size: int, precision: str = "fp32",
                 exports: ExportStore | None = None, device: torch.device | None = None) -> None:
        del image_size, exports  # nothing to export: eager mode takes any input size
        self.backbone = backbone
        self.mean, self.std = backbone.preprocessing.mean, backbone.preprocessing.std
        self.precision = precision
        self.device = device or torch.device("cpu")
        backbone.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor) -> np.ndarray:
        """``(B, 3, H, W)`` uint8 -> ``(B, D)`` float32 (normalised on ``device``)."""
        reduced = (torch.autocast(self.device.type, dtype=torch.bfloat16)
                   if self.precision == "bf16" else contextlib.nullcontext())
        images = normalise(pixels.to(self.device, non_blocking=True), self.mean, self.std)
        with full_float32(), reduced:
            features = self.backbone(images)
        return features.float().cpu().numpy()
