"""Seeded augmented views: a random resized crop and a coin-flip mirror per (image, view).

View ``aug<k>`` (k = 1, 2, ...) of pool image ``i`` draws its crop and mirror from a random
generator seeded by ``(k, i)`` alone, so a view's pixels never depend on the batch, the
order, the process or the run that computes them, and can be cached like any other view
(``--views K`` caches ``aug1`` .. ``aug<K>``). The policy is the one finetune mode applies
online (:data:`CROP_SCALE`, :data:`CROP_RATIO`, torchvision's ``RandomResizedCrop``
sampling with its ten tries and centre-crop fallback), applied to the decoded image at its
own resolution, then resized to the input side.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

#: area fraction of the image a crop keeps, and its aspect-ratio range
CROP_SCALE = (0.6, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
_NAME = re.compile(r"aug([1-9][0-9]*)")


def augmented_views(count: int) -> tuple[str, ...]:
    """The names of ``count`` augmented views: ``("aug1", ..., "aug<count>")``."""
    return tuple(f"aug{k}" for k in range(1, count + 1))


def augmented_number(view: str) -> int | None:
    """``k`` of view ``aug<k>``; ``None`` for any other view name."""
    match = _NAME.fullmatch(view)
    return int(match.group(1)) if match else None


def crop_box(height: int, width: int, view: int, index: int) -> tuple[int, int, int, int, bool]:
    """``(top, left, crop height, crop width, mirror)`` of augmented view ``view`` of pool
    image ``index`` for an image of ``height x width`` pixels."""
    rng = np.random.default_rng([view, index])
    area = height * width
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w, bool(rng.integers(0, 2))
    # torchvision's fallback: the largest centre crop within the ratio range
    in_ratio = width / height
    if in_ratio < CROP_RATIO[0]:
        w, h = width, round(width / CROP_RATIO[0])
    elif in_ratio > CROP_RATIO[1]:
        h, w = height, round(height * CROP_RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w, bool(rng.integers(0, 2))


def augment_pixels(pixels: torch.Tensor, view: int, index: int, size: int,
                   interpolation: str = "bilinear") -> torch.Tensor:
    """``(3, h, w)`` uint8 decoded image -> ``(3, size, size)`` uint8 augmented view
    ``view`` of pool image ``index`` (crop, antialiased resize, mirror)."""
    top, left, h, w, mirror = crop_box(int(pixels.shape[-2]), int(pixels.shape[-1]), view, index)
    out = F.resized_crop_image(pixels, top, left, h, w, [size, size], antialias=True,
                               interpolation=v2.InterpolationMode(interpolation))
    return out.flip(-1) if mirror else out
