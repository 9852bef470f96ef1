"""Backbones behind one registry: ``create_backbone(name, weights)``, ``BACKBONES.names()``."""

from __future__ import annotations

from deephash.backbones.base import PRETRAINED, RANDOM, Backbone, Preprocessing
from deephash.registries import BACKBONES

DEFAULT_BACKBONE = "efficientnet_lite0"


def create_backbone(name: str, weights: str = PRETRAINED) -> Backbone:
    """Build a registered backbone in eval mode.

    ``weights``: ``"default"`` (ImageNet weights), ``"none"`` (random initialisation) or a
    path to a state-dict file.
    """
    backbone = BACKBONES.create(name, weights)
    return backbone.eval()


__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "PRETRAINED", "RANDOM", "Backbone", "Preprocessing",
           "create_backbone"]
