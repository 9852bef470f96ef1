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
from deephash.data.augment import CROP_RATIO, CROP_SCALE
from deephash.data.transforms import TransformSpec
from deephash.distributed import ONE_PROCESS, Ranks
from deephash.errors import DataError
from deephash.features.extract import TransformedImages


class AugmentedFeatures:
    """Features of K augmented views of some pool images: ``views[k]`` is ``(n, D)``, row
    ``r`` belonging to pool index ``pool[r]``."""

    def __init__(self, pool: np.ndarray, views: list[np.ndarray]) -> None:
        if not views or any(v.shape[0] != len(pool) for v in views):
            raise ValueError("augmented views need one row per pool index, in every view")
        self.pool = np.asarray(pool, dtype=np.int64)
        self.views = torch.stack([_in_memory(v) for v in views])  # (K, n, D)

    def rows_of(self, size: int) -> torch.Tensor:
        """``(size,)`` int64: each pool index's row, ``-1`` for images without views."""
        rows = torch.full((size,), -1, dtype=torch.int64)
        rows[torch.from_numpy(self.pool)] = torch.arange(len(self.pool))
        return rows


def _in_memory(features: np.ndarray) -> torch.Tensor:
    # cached features come memory-mapped read-only: training reads every row each epoch, so
    # they are loaded into (writable) memory once, as torch tensors need
    return torch.from_numpy(np.require(features, np.float32, ["C", "W"]))


class FeatureInputs:
    """Pool features ``(N, D)``, optionally those of the mirrored images ``(N, D)`` and of
    K augmented views of the training images (:class:`AugmentedFeatures`).

    Each training sample reads one of its views, uniformly at random: the image itself, its
    mirror (with ``augment``), and its K augmented views (where it has them) -- so with
    mirrors and no augmented views, the mirror with probability 1/2 (augmentation at no
    extraction cost). Evaluation reads the image or its mirror.
    """

    def __init__(self, identity: np.ndarray, flipped: np.ndarray | None, seed: int,
                 augment: bool = True, augmented: AugmentedFeatures | None = None) -> None:
        self.identity = _in_memory(identity)
        self.flipped = None if flipped is None else _in_memory(flipped)
        self.augment = augment and self.flipped is not None
        self.augmented = augmented
        self.augmented_rows = (None if augmented is None
                               else augmented.rows_of(int(self.identity.shape[0])))
        self.generator = torch.Generator().manual_seed(seed)
        self.in_dim = int(self.identity.shape[1])

    def train_batches(self, batches: list[np.ndarray], part: Ranks = ONE_PROCESS
                      ) -> Iterator[torch.Tensor]:
        """``(B / W, D)`` features of ``part``'s share of each batch of pool indices, each
        row from a random view (drawn for the whole batch on every rank, so the ranks
        together read what one process would)."""
        for x in self._global_batches(batches):
            yield part.take(x)

    def _global_batches(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        mirrors = int(self.augment)
        for indices in batches:
            rows = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
            x = self.identity[rows]
            if self.augmented is None and not mirrors:
                yield x
                continue
            drawn_rows = (torch.full_like(rows, -1) if self.augmented_rows is None
                          else self.augmented_rows[rows])
            k = 0 if self.augmented is None else int(self.augmented.views.shape[0])
            choices = 1 + mirrors + torch.where(drawn_rows >= 0, k, 0)  # views per sample
            pick = (torch.rand(len(rows), generator=self.generator) * choices).long()
            if mirrors and self.flipped is not None:  # pick 0: the mirror, 1: the image
                x = torch.where((pick == 0)[:, None], self.flipped[rows], x)
            if self.augmented is not None:  # then the augmented views
                view = pick - 1 - mirrors
                use = view >= 0
                if bool(use.any()):
                    x = x.clone()
                    x[use] = self.augmented.views[view[use], drawn_rows[use]]
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
    """Train-time image augmentation: random resized crop and flips, the policy of the
    cached augmented views (:mod:`deephash.data.augment`), drawn online."""

    def __init__(self, spec: TransformSpec, flip: bool) -> None:
        steps: list[object] = [
            v2.PILToTensor(),
            v2.RandomResizedCrop(spec.image_size, scale=CROP_SCALE, ratio=CROP_RATIO,
                                 antialias=True,
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

    def train_batches(self, batches: list[np.ndarray], part: Ranks = ONE_PROCESS
                      ) -> Iterator[torch.Tensor]:
        """Augmented images ``(B / W, 3, H, W)`` of ``part``'s share of each batch."""
        batches = [part.take(b) for b in batches]
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
