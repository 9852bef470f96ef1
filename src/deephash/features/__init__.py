"""Feature extraction with an on-disk cache: ``compute_features``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deephash.backbones import Backbone
from deephash.data import ImageDataset
from deephash.data.transforms import TransformSpec
from deephash.features.cache import FeatureCache, FeatureKey
from deephash.features.extract import TransformedImages, extract_features
from deephash.progress import progress_bar


def transform_spec(backbone: Backbone, image_size: int, view: str = "identity") -> TransformSpec:
    """The evaluation transform a backbone's preprocessing data asks for."""
    pre = backbone.preprocessing
    return TransformSpec(image_size=image_size, mean=pre.mean, std=pre.std,
                         interpolation=pre.interpolation, view=view)


def feature_key(backbone: Backbone, dataset: ImageDataset, spec: TransformSpec) -> FeatureKey:
    if backbone.weights_id is None:
        raise ValueError("randomly initialised backbones have no cache key")
    return FeatureKey(backbone=backbone.name, weights=backbone.weights_id,
                      transform=spec.describe(), dataset=dataset.fingerprint(),
                      n_images=len(dataset), dim=backbone.num_features)


def compute_features(dataset: ImageDataset, backbone: Backbone, spec: TransformSpec, *,
                     cache_dir: Path | None, batch_size: int = 128, num_workers: int = 0,
                     device: torch.device | None = None, shard_size: int = 4096) -> np.ndarray:
    """``(len(dataset), D)`` float32 features of every pool image, cached when possible.

    Random-weight backbones and ``cache_dir=None`` bypass the cache. An interrupted
    extraction keeps its finished shards of ``shard_size`` images and resumes from them.
    The cache key's data fingerprint is remembered where the data set was opened to
    remember it: ``open_dataset(..., fingerprint_memo=memo_location(cache_dir))`` keeps
    everything under ``cache_dir``.
    """
    transform = spec.build()
    bar = progress_bar(len(dataset), f"features {backbone.name} {spec.image_size}px {spec.view}",
                       unit="img")

    def compute(indices: np.ndarray) -> np.ndarray:
        images = TransformedImages(dataset, indices, transform, spec.image_size)
        return extract_features(backbone, images, batch_size=batch_size,
                                num_workers=num_workers, device=device, on_batch=bar.update)

    try:
        if cache_dir is None or backbone.weights_id is None:
            return compute(np.arange(len(dataset)))
        cache = FeatureCache(cache_dir, shard_size)
        return cache.get_or_compute(feature_key(backbone, dataset, spec), compute,
                                    on_resume=bar.update)
    finally:
        bar.close()


__all__ = ["FeatureCache", "FeatureKey", "compute_features", "extract_features", "feature_key",
           "transform_spec"]
