"""Batched feature extraction: decoding to uint8 pixels, inference in a runtime."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from deephash.backbones import Backbone
from deephash.data import ImageDataset
from deephash.data.augment import augment_pixels, augmented_number
from deephash.data.transforms import VIEWS, TransformSpec
from deephash.devices import decoding_workers
from deephash.errors import DataError
from deephash.prefetch import prefetching
from deephash.runtimes.base import Runtime
from deephash.runtimes.torch_eager import TorchRuntime


class PoolImages(Dataset[tuple[torch.Tensor, int, str]]):
    """``(image tensor, pool index, error message or "")`` for selected pool indices.

    A bad image yields a zero tensor and its error, so that the main process can stop
    with a clear message naming the file (not a worker traceback).
    """

    blank_dtype = torch.float32

    def __init__(self, dataset: ImageDataset, indices: Sequence[int] | np.ndarray,
                 image_size: int) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, str]:
        index = int(self.indices[position])
        try:
            return self._load(index), index, ""
        except DataError as exc:
            blank = torch.zeros(3, self.image_size, self.image_size, dtype=self.blank_dtype)
            return blank, index, str(exc)


class TransformedImages(PoolImages):
    """``(3, S, S)`` float32 images: ``transform`` of each decoded PIL image."""

    def __init__(self, dataset: ImageDataset, indices: Sequence[int] | np.ndarray,
                 transform: Callable[[Image.Image], torch.Tensor], image_size: int) -> None:
        super().__init__(dataset, indices, image_size)
        self.transform = transform

    def _load(self, index: int) -> torch.Tensor:
        return self.transform(self.dataset.load_image(index))


#: ``(B, 3, S, S)`` uint8 identity pixels, ``(B,)`` pool indices, error messages (``""``
#: where the image decoded), ``{augmented view: (B, 3, S, S) uint8}``
PixelBatch = tuple[torch.Tensor, torch.Tensor, list[str], dict[str, torch.Tensor]]


class PixelImages(PoolImages):
    """Images for a :class:`Runtime`: each decoded by :meth:`ImageDataset.load_pixels`
    into ``(3, h, w)`` uint8 at its own size; :meth:`collate` resizes and crops a batch
    as ``spec`` says (in its ``identity`` view) into ``(B, 3, S, S)`` uint8, one call per
    distinct image size (a CIFAR-10 batch is one call, not 128), for the runtime to
    normalise by the batch; and draws the ``augmented`` views (``aug<k>``,
    :mod:`deephash.data.augment`) of each image from its decoded pixels."""

    blank_dtype = torch.uint8

    def __init__(self, dataset: ImageDataset, indices: Sequence[int] | np.ndarray,
                 spec: TransformSpec, augmented: tuple[str, ...] = ()) -> None:
        super().__init__(dataset, indices, spec.image_size)
        self.spec = dataclasses.replace(spec, view="identity")
        self.augmented = {view: _augmented_number(view) for view in augmented}

    def _load(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.dataset.load_pixels(index)).permute(2, 0, 1)

    def collate(self, items: list[tuple[torch.Tensor, int, str]]) -> PixelBatch:
        """``[(pixels, index, error)]`` -> a :data:`PixelBatch`."""
        size = self.spec.image_size
        batch = torch.empty(len(items), 3, size, size, dtype=torch.uint8)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, (pixels, _index, _error) in enumerate(items):
            by_shape.setdefault(tuple(pixels.shape), []).append(position)
        for positions in by_shape.values():
            group = torch.stack([items[p][0] for p in positions])
            batch[positions] = self.spec.resize_crop(group)
        augmented = {view: torch.stack([
            augment_pixels(pixels, number, index, size, self.spec.interpolation)
            for pixels, index, _ in items]) for view, number in self.augmented.items()}
        return (batch, torch.tensor([index for _, index, _ in items], dtype=torch.int64),
                [error for _, _, error in items], augmented)


def _augmented_number(view: str) -> int:
    number = augmented_number(view)
    if number is None:
        raise ValueError(f"{view!r} is not an augmented view (aug1, aug2, ...)")
    return number


def make_loader(images: PoolImages, batch_size: int, num_workers: int | None,
                device: torch.device) -> DataLoader:
    """Batches of ``images`` in order, decoded by :func:`decoding_workers` processes."""
    collate = images.collate if isinstance(images, PixelImages) else None
    return DataLoader(images, batch_size=batch_size, shuffle=False,
                      num_workers=decoding_workers(num_workers, device), collate_fn=collate,
                      pin_memory=device.type == "cuda", persistent_workers=False)


def apply_view(batch: torch.Tensor, view: str) -> torch.Tensor:
    """A view of ``(B, 3, H, W)`` identity images (pixels or normalised), as
    :class:`TransformSpec` with that ``view`` would have made them (a mirror commutes with
    normalisation)."""
    if view == "identity":
        return batch
    if view == "hflip":
        return batch.flip(-1)
    raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")


def extract_features(backbone: Backbone, images: PixelImages, *, batch_size: int = 128,
                     num_workers: int | None = None, device: torch.device | None = None,
                     on_batch: Callable[[int], object] | None = None) -> np.ndarray:
    """Features of every image in ``images``, in order, with PyTorch: ``(len(images), D)``
    float32. Raises as :func:`extract_views`."""
    runtime = TorchRuntime(backbone, images.image_size, device=device)
    return extract_views(runtime, backbone, images, ("identity",), batch_size=batch_size,
                         num_workers=num_workers, on_batch=on_batch)["identity"]


def extract_views(runtime: Runtime, backbone: Backbone, images: PixelImages,
                  views: tuple[str, ...], *, batch_size: int = 128,
                  num_workers: int | None = None,
                  on_batch: Callable[[int], object] | None = None) -> dict[str, np.ndarray]:
    """``{view: (len(images), D) float32}`` for each of ``views`` of every image, in order
    (``identity``, ``hflip``, and the augmented views ``images`` draws).

    Each batch is decoded once, by a thread of this process while the runtime works on the
    previous batch, or in ``num_workers`` DataLoader processes (``None``:
    :func:`decoding_workers` for the runtime's device), and serves every view as uint8
    pixels that the runtime normalises. ``on_batch(n)`` is told of ``n`` image-views
    done. Raises :class:`DataError` on the first batch holding an unreadable image, and
    when the backbone produces non-finite values.
    """
    out = {view: np.empty((len(images), backbone.num_features), dtype=np.float32)
           for view in views}
    position = 0
    loader = make_loader(images, batch_size, num_workers, runtime.device)
    with prefetching(loader) if loader.num_workers == 0 else nullcontext(loader) as batches:
        for batch, _indices, errors, augmented in batches:
            bad = [e for e in errors if e]
            if bad:
                more = f" (and {len(bad) - 1} more in the same batch)" if len(bad) > 1 else ""
                raise DataError(bad[0] + more)
            for view in views:
                pixels = augmented[view] if view in augmented else apply_view(batch, view)
                out[view][position:position + len(batch)] = runtime(pixels)
            position += len(batch)
            if on_batch is not None:
                on_batch(len(batch) * len(views))
    for view in views:
        if not np.isfinite(out[view]).all():
            raise DataError(f"backbone {backbone.name} produced NaN or infinite features "
                            f"({runtime.name} runtime, {runtime.precision}); check the "
                            "weights file")
    return out
