"""Backbone features of the pool, extracted once and then read from the feature cache."""

from __future__ import annotations

import numpy as np
import torch

from deephash.backbones import Backbone, create_backbone
from deephash.data import ImageDataset
from deephash.features import compute_views, transform_spec
from deephash.pipeline.cache import cache_location
from deephash.pipeline.config import BaselineConfig


def load_features(config: BaselineConfig, dataset: ImageDataset, device: torch.device,
                  views: tuple[str, ...] | None = None, subset: np.ndarray | None = None,
                  backbone: Backbone | None = None) -> dict[str, np.ndarray]:
    """Pool features per view: ``{"identity": (N, D)}`` (plus ``"hflip"`` when asked, from
    the same decoded images), memory-mapped read-only when they come from the cache;
    ``views``, pool indices ``subset`` (rows in its order) and ``backbone`` (e.g. a split
    backbone's prefix: its activations) instead of the configuration's when given."""
    if backbone is None:
        backbone = create_backbone(config.backbone.name, config.backbone.weights)
    ext = config.extraction
    if views is None:
        views = ("identity", "hflip") if ext.flip_views else ("identity",)
    return compute_views(dataset, backbone, transform_spec(backbone, config.backbone.image_size),
                         views, subset=subset, cache_dir=cache_location(ext), runtime=ext.runtime,
                         precision=ext.precision, batch_size=ext.batch_size,
                         num_workers=ext.num_workers, device=device)
