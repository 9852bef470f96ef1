"""Batched feature extraction: decoding in DataLoader workers, inference in a runtime."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from deephash.backbones import Backbone
from deephash.data import ImageDataset
from deephash.data.transforms import VIEWS
from deephash.errors import DataError
from deephash.runtimes.base import Runtime
from deephash.runtimes.torch_eager import TorchRuntime


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


def apply_view(batch: torch.Tensor, view: str) -> torch.Tensor:
    """A view of ``(B, 3, H, W)`` identity images, as :class:`TransformSpec` with that
    ``view`` would have made them (its mirror is the last step, so it commutes)."""
    if view == "identity":
        return batch
    if view == "hflip":
        return batch.flip(-1)
    raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")


def extract_features(backbone: Backbone, images: TransformedImages, *, batch_size: int = 128,
                     num_workers: int = 0, device: torch.device | None = None,
                     on_batch: Callable[[int], object] | None = None) -> np.ndarray:
    """Features of every image in ``images``, in order, with PyTorch: ``(len(images), D)``
    float32. Raises as :func:`extract_views`."""
    runtime = TorchRuntime(backbone, images.image_size, device=device)
    return extract_views(runtime, backbone, images, ("identity",), batch_size=batch_size,
                         num_workers=num_workers, on_batch=on_batch)["identity"]


def extract_views(runtime: Runtime, backbone: Backbone, images: TransformedImages,
                  views: tuple[str, ...], *, batch_size: int = 128, num_workers: int = 0,
                  on_batch: Callable[[int], object] | None = None) -> dict[str, np.ndarray]:
    """``{view: (len(images), D) float32}`` for each of ``views`` of every image, in order.

    Each batch is decoded once (in ``num_workers`` DataLoader processes, overlapping the
    runtime's work on the previous batch) and serves every view. ``on_batch(n)`` is told of
    ``n`` image-views done. Raises :class:`DataError` on the first batch holding an
    unreadable image, and when the backbone produces non-finite values.
    """
    out = {view: np.empty((len(images), backbone.num_features), dtype=np.float32)
           for view in views}
    position = 0
    for batch, _indices, errors in make_loader(images, batch_size, num_workers, runtime.device):
        bad = [e for e in errors if e]
        if bad:
            more = f" (and {len(bad) - 1} more in the same batch)" if len(bad) > 1 else ""
            raise DataError(bad[0] + more)
        for view in views:
            out[view][position:position + len(batch)] = runtime(apply_view(batch, view))
        position += len(batch)
        if on_batch is not None:
            on_batch(len(batch) * len(views))
    for view in views:
        if not np.isfinite(out[view]).all():
            raise DataError(f"backbone {backbone.name} produced NaN or infinite features "
                            f"({runtime.name} runtime, {runtime.precision}); check the "
                            "weights file")
    return out
