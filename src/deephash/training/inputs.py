"""What the model reads: cached features (frozen mode) or augmented images (finetune mode).

Both give the trainer the same two operations: the input tensors of an epoch's batches,
and the inputs of arbitrary pool indices for evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from deephash.data import ImageDataset
from deephash.data.transforms import TransformSpec
from deephash.errors import DataError
from deephash.features.extract import TransformedImages


class FeatureInputs:
    """Pool features ``(N, D)`` and optionally those of the mirrored images ``(N, D)``.

    With ``augment``, each training sample uses its mirrored view with probability 1/2
    (augmentation at no extraction cost); evaluation can read either view.
    """

    def __init__(self, identity: np.ndarray, flipped: np.ndarray | None, seed: int,
                 augment: bool = True) -> None:
        # cached features come memory-mapped read-only: training reads every row each
        # epoch, so they are loaded into (writable) memory once, as torch tensors need
        self.identity = torch.from_numpy(np.require(identity, np.float32, ["C", "W"]))
        self.flipped = None if flipped is None else torch.from_numpy(
            np.require(flipped, np.float32, ["C", "W"]))
        self.augment = augment and self.flipped is not None
        self.generator = torch.Generator().manual_seed(seed)
        self.in_dim = int(self.identity.shape[1])

    def train_batches(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        for indices in batches:
            rows = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
            x = self.identity[rows]
            if self.augment and self.flipped is not None:
                use_flip = torch.rand(len(rows), generator=self.generator) < 0.5
                x = torch.where(use_flip[:, None], self.flipped[rows], x)
            yield x

    def eval_batches(self, indices: np.ndarray, batch_size: int,
                     mirrored: bool = False) -> Iterator[torch.Tensor]:
        """Features of ``indices`` in batches; ``mirrored``: of the mirrored images."""
        if mirrored and self.flipped is None:
            raise ValueError("mirrored evaluation needs the mirrored-view features")
        source = self.flipped if mirrored and self.flipped is not None else self.identity
        rows = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        for start in range(0, len(rows), batch_size):
            yield source[rows[start:start + batch_size]]


class _Augment:
    """Train-time image augmentation: random resized crop (scale 0.6-1) and flips."""

    def __init__(self, spec: TransformSpec, flip: bool) -> None:
        steps: list[object] = [
            v2.PILToTensor(),
            v2.RandomResizedCrop(spec.image_size, scale=(0.6, 1.0), antialias=True,
                                 interpolation=v2.InterpolationMode(spec.interpolation)),
        ]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean),
                                                                      list(spec.std))]
        self.transform = v2.Compose(steps)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image)


class ImageInputs:
    """Images of the pool, decoded by DataLoader workers."""

    def __init__(self, dataset: ImageDataset, spec: TransformSpec, flip: bool, num_workers: int,
                 in_dim: int) -> None:
        self.dataset = dataset
        self.spec = spec
        self.augment = _Augment(spec, flip)
        self.evaluate = spec.build()
        self.evaluate_mirrored = dataclasses.replace(spec, view="hflip").build()
        self.num_workers = num_workers
        self.in_dim = in_dim

    def _loader(self, images: TransformedImages, batches: Iterable[list[int]]) -> Iterator[
            torch.Tensor]:
        loader = DataLoader(images, batch_sampler=list(batches), num_workers=self.num_workers)
        for batch, _indices, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise DataError(bad[0])
            yield batch

    def train_batches(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        flat = np.concatenate(batches) if batches else np.empty(0, dtype=np.int64)
        images = TransformedImages(self.dataset, flat, self.augment, self.spec.image_size)
        bounds = np.cumsum([0] + [len(b) for b in batches])
        yield from self._loader(images, (list(range(bounds[i], bounds[i + 1]))
                                         for i in range(len(batches))))

    def eval_batches(self, indices: np.ndarray, batch_size: int,
                     mirrored: bool = False) -> Iterator[torch.Tensor]:
        """Evaluation-transformed images ``(B, 3, H, W)``; ``mirrored``: flipped left-right."""
        transform = self.evaluate_mirrored if mirrored else self.evaluate
        images = TransformedImages(self.dataset, indices, transform, self.spec.image_size)
        yield from self._loader(images, (list(range(s, min(s + batch_size, len(indices))))
                                         for s in range(0, len(indices), batch_size)))
