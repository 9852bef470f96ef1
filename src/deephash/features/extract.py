"""Batched feature extraction under ``torch.inference_mode``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from deephash.backbones import Backbone
from deephash.data import ImageDataset
from deephash.devices import full_float32
from deephash.errors import DataError


class TransformedImages(Dataset[tuple[torch.Tensor, int, str]]):
    """``(image tensor, pool index, error message or "")`` for selected pool indices.

    A bad image yields a zero tensor and its error, so that the main process can stop
    with a clear message naming the file (not a worker traceback).
    """

    def __init__(self, dataset: ImageDataset, indices: Sequence[int] | np.ndarray,
                 transform: Callable[[Image.Image], torch.Tensor], image_size: int) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, str]:
        index = int(self.indices[position])
        try:
            return self.transform(self.dataset.load_image(index)), index, ""
        except DataError as exc:
            return torch.zeros(3, self.image_size, self.image_size), index, str(exc)


def make_loader(images: TransformedImages, batch_size: int, num_workers: int,
                device: torch.device) -> DataLoader:
    return DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda", persistent_workers=False)


@torch.inference_mode()
def extract_features(backbone: Backbone, images: TransformedImages, *, batch_size: int = 128,
                     num_workers: int = 0, device: torch.device | None = None,
                     on_batch: Callable[[int], object] | None = None) -> np.ndarray:
    """Features of every image in ``images``, in order: ``(len(images), D)`` float32.

    Raises :class:`DataError` on the first batch holding an unreadable image, and when the
    backbone produces non-finite values.
    """
    device = device or torch.device("cpu")
    with full_float32():
        out = _extract(backbone.to(device).eval(), images, batch_size, num_workers, device,
                       on_batch)
    if not np.isfinite(out).all():
        raise DataError(f"backbone {backbone.name} produced NaN or infinite features; "
                        "check the weights file")
    return out


def _extract(backbone: Backbone, images: TransformedImages, batch_size: int, num_workers: int,
             device: torch.device, on_batch: Callable[[int], object] | None) -> np.ndarray:
    out = np.empty((len(images), backbone.num_features), dtype=np.float32)
    position = 0
    for batch, _indices, errors in make_loader(images, batch_size, num_workers, device):
        bad = [e for e in errors if e]
        if bad:
            more = f" (and {len(bad) - 1} more in the same batch)" if len(bad) > 1 else ""
            raise DataError(bad[0] + more)
        features = backbone(batch.to(device, non_blocking=True)).float()
        out[position:position + len(features)] = features.cpu().numpy()
        position += len(features)
        if on_batch is not None:
            on_batch(len(features))
    return out
