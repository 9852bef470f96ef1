"""Evaluation transforms, built from a backbone's preprocessing data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torchvision.transforms import v2

VIEWS = ("identity", "hflip")


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

    def build(self) -> Callable[[Image.Image], torch.Tensor]:
        """``PIL.Image -> (3, image_size, image_size)`` float32 tensor."""
        if self.view not in VIEWS:
            raise ValueError(f"unknown view {self.view!r}; known: {', '.join(VIEWS)}")
        mode = v2.InterpolationMode(self.interpolation)
        steps: list[Callable[..., object]] = [
            v2.PILToTensor(),
            v2.Resize(self.image_size, interpolation=mode, antialias=True),
            v2.CenterCrop(self.image_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(self.mean), list(self.std)),
        ]
        if self.view == "hflip":
            steps.append(v2.RandomHorizontalFlip(p=1.0))
        return v2.Compose(steps)
