"""ResNet and VGG backbones from torchvision, with torchvision's weights API.

``weights="default"`` downloads torchvision's recommended ImageNet weights into the torch
hub cache (or reads them from there); offline without them, the error says how to fix it.
A path loads a local file in torchvision's state-dict format.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from deephash.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRETRAINED,
    RANDOM,
    Backbone,
    Preprocessing,
    file_digest,
    load_state_dict_file,
    load_strict,
)
from deephash.errors import WeightsError

PREPROCESSING = Preprocessing(mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear",
                              native_size=224)

#: name -> (constructor, weights enum, feature dimension)
ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], type[models.WeightsEnum], int]] = {
    "resnet18": (models.resnet18, models.ResNet18_Weights, 512),
    "resnet34": (models.resnet34, models.ResNet34_Weights, 512),
    "resnet50": (models.resnet50, models.ResNet50_Weights, 2048),
    "vgg16": (models.vgg16, models.VGG16_Weights, 4096),
    "vgg19": (models.vgg19, models.VGG19_Weights, 4096),
}


def _download_state_dict(enum: models.WeightsEnum) -> dict[str, torch.Tensor]:
    try:
        return enum.get_state_dict(progress=True, check_hash=True)
    except OSError as exc:  # URLError and friends: no internet
        filename = enum.url.rsplit("/", 1)[-1]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise WeightsError(
            f"cannot download {enum} from {enum.url} ({exc}); on a machine with internet, "
            f"download that file and pass --weights PATH, or put it at {cached}"
        ) from None


def _strip_classifier(name: str, model: nn.Module) -> None:
    if name.startswith("resnet"):
        model.fc = nn.Identity()
    else:  # VGG: keep fc6, ReLU, Dropout, fc7, ReLU
        model.classifier = model.classifier[:5]  # type: ignore[index]


def torchvision_backbone(name: str, weights: str = PRETRAINED) -> Backbone:
    """A torchvision classifier with its classification layer removed."""
    constructor, enum_type, num_features = ARCHITECTURES[name]
    model = constructor(weights=None)
    weights_id = None
    if weights == PRETRAINED:
        enum = enum_type.DEFAULT
        load_strict(model, _download_state_dict(enum), str(enum))
        weights_id = f"torchvision:{enum}"
    elif weights != RANDOM:
        path = Path(weights)
        load_strict(model, load_state_dict_file(path), str(path))
        weights_id = f"file:{file_digest(path)}"
    _strip_classifier(name, model)
    return Backbone(name, model, num_features, PREPROCESSING, weights_id)
