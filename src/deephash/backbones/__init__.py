"""Backbones behind one registry: ``create_backbone(name, weights)``, ``BACKBONES.names()``.

The built-in names (``efficientnet_lite0``, ``resnet18`` ...) and ``timm:NAME``, any timm
model (:mod:`deephash.backbones.timm_models`).
"""

from __future__ import annotations

from deephash.backbones.base import PRETRAINED, RANDOM, Backbone, Preprocessing
from deephash.registries import BACKBONES, parse_backbone

DEFAULT_BACKBONE = "efficientnet_lite0"


def create_backbone(name: str, weights: str = PRETRAINED) -> Backbone:
    """Build a registered backbone (or ``timm:NAME``) in eval mode.

    ``weights``: ``"default"`` (ImageNet weights), ``"none"`` (random initialisation) or a
    path to a state-dict file.
    """
    entry, model = parse_backbone(name)
    backbone = (BACKBONES.create(entry, weights) if model is None
                else BACKBONES.create(entry, model, weights))
    return backbone.eval()


__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "PRETRAINED", "RANDOM", "Backbone", "Preprocessing",
           "create_backbone"]
