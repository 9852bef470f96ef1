"""Evaluation transforms, built from a backbone's preprocessing data.

A transform runs in two parts: *pixels* (resize and crop in uint8, and the view's mirror)
once per image where the image is decoded, and *normalisation* (to float32, minus mean,
over std) on whole batches where the model runs — inside the exported model for OpenVINO.
Both parts are elementwise-exact re-orderings of torchvision's own steps, so
``normalise(pixels(image))`` is bitwise what the single composed transform gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from deephash.data.augment import augmented_number

#: the views derived from a batch of identity pixels; augmented views ``aug<k>`` are drawn
#: per image from the decoded pixels (:mod:`deephash.data.augment`)
VIEWS = ("identity", "hflip")


def check_view(view: str) -> None:
    """Raise ``ValueError`` unless ``view`` is one of :data:`VIEWS` or ``aug<k>``."""
    if view not in VIEWS and augmented_number(view) is None:
        raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}, aug1, aug2, ...")


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(..., 3, H, W)`` uint8 -> float32 scaled to [0, 1], then ``(x - mean) / std`` per
    channel (torchvision's ``ToDtype(scale=True)`` and ``Normalize``, on any batch)."""
    scaled = F.to_dtype(pixels, torch.float32, scale=True)
    return F.normalize(scaled, list(mean), list(std))


@dataclass(frozen=True)
class TransformSpec:
    """Everything that decides the pixels a backbone sees; part of the feature-cache key.

    The image's shorter side is resized to ``image_size`` and the centre
    ``image_size x image_size`` square is kept (square images are only resized), then
    the image is scaled to [0, 1] and normalised with ``mean``/``std``. ``view``
    ``hflip`` mirrors the result left to right.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    view: str = "identity"

    def describe(self) -> dict[str, object]:
        return asdict(self)

    def resize_crop(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(..., 3, h, w)`` uint8 -> ``(..., 3, image_size, image_size)`` uint8: the
        shorter side resized to ``image_size`` (antialiased), the centre square kept, and
        (``hflip``) mirrored. Images of one size may come as one batch: each comes out as
        it would alone. Augmented views are drawn per image: see
        :func:`deephash.data.augment.augment_pixels`."""
        self._check_resizable_view()
        size = self.image_size
        pixels = F.resize_image(pixels, [size], antialias=True,
                                interpolation=v2.InterpolationMode(self.interpolation))
        pixels = F.center_crop_image(pixels, [size, size])
        return pixels.flip(-1) if self.view == "hflip" else pixels

    def build_pixels(self) -> Callable[[np.ndarray], torch.Tensor]:
        """``(h, w, 3)`` uint8 pixels -> ``(3, image_size, image_size)`` uint8
        (:meth:`resize_crop`); :meth:`normalise` finishes the transform."""
        self._check_resizable_view()
        return lambda image: self.resize_crop(torch.from_numpy(image).permute(2, 0, 1))

    def _check_resizable_view(self) -> None:
        """Raise ``ValueError`` unless :meth:`resize_crop` makes ``view`` (the views of
        :data:`VIEWS`; an augmented view is drawn per image)."""
        if self.view not in VIEWS:
            check_view(self.view)
            raise ValueError(f"view {self.view} is drawn per image from the decoded pixels "
                             "(deephash.data.augment), not by resize_crop")

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(..., 3, S, S)`` uint8 from :meth:`build_pixels` -> float32, normalised."""
        return normalise(pixels, self.mean, self.std)

    def build(self) -> Callable[[Image.Image], torch.Tensor]:
        """``PIL.Image -> (3, image_size, image_size)`` float32 tensor."""
        pixels = self.build_pixels()
        return lambda image: self.normalise(pixels(np.array(image)))
