"""Finetune-mode inputs from decoded pixels held on the training device.

Small images of one size (CIFAR-10's 32 x 32: 184 MB of uint8 for 60,000 images) are
decoded once and kept as one ``(N, 3, h, w)`` uint8 tensor on the device. Each training
batch is then augmented there, as one operation on the whole batch: a random resized crop
(the policy of :mod:`deephash.data.augment`: area fraction in :data:`CROP_SCALE`, aspect
ratio log-uniform in :data:`CROP_RATIO`, clamped to the image instead of torchvision's ten
tries) and a coin-flip mirror are one affine sampling grid per image, and ``grid_sample``
resamples the batch bilinearly to the input side. No decoding and no worker processes per
epoch; on a GPU the augmentation costs next to nothing. Evaluation batches go through
:meth:`TransformSpec.resize_crop` like every other path, so they are the pixels that
feature extraction sees.

Images larger than the input side would need antialiasing that ``grid_sample`` does not
do; those data sets, and those of mixed sizes or too large for memory, use
:class:`deephash.training.inputs.ImageInputs` (DataLoader workers) instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as nnf

from deephash.data import ImageDataset
from deephash.data.augment import CROP_RATIO, CROP_SCALE
from deephash.data.transforms import TransformSpec
from deephash.distributed import ONE_PROCESS, Ranks
from deephash.progress import progress_bar

log = logging.getLogger(__name__)

#: the most bytes of decoded pixels kept on the device
POOL_BUDGET_BYTES = 4 * 2**30


def crop_grids(n: int, generator: torch.Generator, flip: bool) -> torch.Tensor:
    """``(n, 2, 3)`` affine sampling matrices (``affine_grid``'s normalised coordinates) of
    random resized crops, mirrored with probability 1/2 when ``flip``."""
    area = torch.empty(n).uniform_(*CROP_SCALE, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]),
                                        generator=generator)
    ratio = log_ratio.exp()
    width = (area * ratio).sqrt().clamp(max=1.0)  # fractions of the image's sides
    height = (area / ratio).sqrt().clamp(max=1.0)
    centre_x = (1 - width) * (2 * torch.rand(n, generator=generator) - 1)
    centre_y = (1 - height) * (2 * torch.rand(n, generator=generator) - 1)
    mirror = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(mirror, -width, width)
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    return theta


def augment_batch(pixels: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, h, w)`` uint8 and ``(B, 2, 3)`` crops -> ``(B, 3, size, size)`` float32
    pixels in [0, 1], bilinear."""
    images = pixels.float().div_(255)
    grid = nnf.affine_grid(theta.to(images.device), [len(images), 3, size, size],
                           align_corners=False)
    return nnf.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                           align_corners=False).clamp_(0, 1)


class PixelPoolInputs:
    """Training and evaluation inputs from a ``(N, 3, h, w)`` uint8 pool on ``device``."""

    def __init__(self, pool: torch.Tensor, spec: TransformSpec, flip: bool, seed: int,
                 in_dim: int) -> None:
        self.pool = pool
        self.spec = spec
        self.flip = flip
        self.generator = torch.Generator().manual_seed(seed)
        self.in_dim = in_dim

    @classmethod
    def load(cls, dataset: ImageDataset, spec: TransformSpec, flip: bool, seed: int,
             in_dim: int, device: torch.device) -> PixelPoolInputs | None:
        """The pool of ``dataset``'s decoded images on ``device``, or ``None`` when they
        are not all of one size no larger than the input side, or exceed
        :data:`POOL_BUDGET_BYTES`."""
        if len(dataset) == 0:
            return None
        first = dataset.load_pixels(0)
        height, width = first.shape[:2]
        if max(height, width) > spec.image_size or \
                len(dataset) * first.nbytes > POOL_BUDGET_BYTES:
            return None
        pool = np.empty((len(dataset), 3, height, width), dtype=np.uint8)
        bar = progress_bar(len(dataset), "decoding into memory", unit="img")
        try:
            for index in range(len(dataset)):
                pixels = first if index == 0 else dataset.load_pixels(index)
                if pixels.shape != first.shape:
                    log.info("images of several sizes (%s, %s): decoded per batch instead",
                             first.shape[:2], pixels.shape[:2])
                    return None
                pool[index] = pixels.transpose(2, 0, 1)
                bar.update(1)
        finally:
            bar.close()
        log.info("%d images of %d x %d decoded into %s memory (%.0f MB); augmented there per "
                 "batch", len(dataset), height, width, device.type, pool.nbytes / 1e6)
        return cls(torch.from_numpy(pool).to(device), spec, flip, seed, in_dim)

    def train_batches(self, batches: list[np.ndarray], part: Ranks = ONE_PROCESS
                      ) -> Iterator[torch.Tensor]:
        """``(B / W, 3, S, S)`` augmented images of ``part``'s share of each batch (the
        crops drawn for the whole batch, as one process would)."""
        for indices in batches:
            theta = crop_grids(len(indices), self.generator, self.flip)
            rows = torch.from_numpy(np.ascontiguousarray(part.take(indices), dtype=np.int64))
            pixels = self.pool[rows.to(self.pool.device)]
            yield self.spec.normalise(augment_batch(pixels, part.take(theta),
                                                    self.spec.image_size))

    def eval_batches(self, indices: np.ndarray, batch_size: int,
                     mirrored: bool = False) -> Iterator[torch.Tensor]:
        """Evaluation-transformed images ``(B, 3, S, S)`` (the extraction transform);
        ``mirrored``: flipped left-right."""
        rows = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        for start in range(0, len(rows), batch_size):
            pixels = self.spec.resize_crop(self.pool[rows[start:start + batch_size]
                                                     .to(self.pool.device)])
            if mirrored:
                pixels = pixels.flip(-1)
            yield self.spec.normalise(pixels)
