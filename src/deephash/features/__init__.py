"""Feature extraction with an on-disk cache: ``compute_views``, ``compute_features``."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from deephash.backbones import Backbone
from deephash.data import ImageDataset
from deephash.data.augment import augmented_number
from deephash.data.transforms import TransformSpec
from deephash.distributed import ranks
from deephash.errors import ConfigError
from deephash.features.cache import FeatureCache, FeatureKey
from deephash.features.extract import PixelImages, extract_features, extract_views
from deephash.progress import progress_bar
from deephash.runtimes import Runtime, build_runtime

log = logging.getLogger(__name__)


def transform_spec(backbone: Backbone, image_size: int, view: str = "identity") -> TransformSpec:
    """The evaluation transform a backbone's preprocessing data asks for, at ``image_size``
    px (``--image-size``). Raises ``ConfigError`` when the backbone cannot take that side
    (``Preprocessing.fixed_size``, ``side_step``)."""
    pre = backbone.preprocessing
    if pre.fixed_size and image_size != pre.native_size:
        raise ConfigError(f"{backbone.name} takes {pre.native_size} px images only, not "
                          f"--image-size {image_size}; pass --image-size {pre.native_size}")
    if image_size % pre.side_step:
        below = image_size - image_size % pre.side_step
        sizes = " or ".join(str(side) for side in (below, below + pre.side_step) if side)
        raise ConfigError(f"{backbone.name} takes sides that are multiples of its "
                          f"{pre.side_step} px patches, not --image-size {image_size}; pass "
                          f"--image-size {sizes}")
    return TransformSpec(image_size=image_size, mean=pre.mean, std=pre.std,
                         interpolation=pre.interpolation, view=view)


def feature_key(backbone: Backbone, dataset: ImageDataset, spec: TransformSpec,
                precision: str = "fp32", subset: np.ndarray | None = None) -> FeatureKey:
    """The cache key of ``backbone``'s features of ``dataset`` (or of its pool indices
    ``subset``, in that order) seen through ``spec``; the runtime is not part of it (see
    :mod:`deephash.features.cache`)."""
    if backbone.weights_id is None:
        raise ValueError("randomly initialised backbones have no cache key")
    data, n_images = dataset.fingerprint(), len(dataset)
    if subset is not None:
        rows = np.ascontiguousarray(subset, dtype=np.int64)
        data += f"/subset:{hashlib.sha256(rows.tobytes()).hexdigest()[:32]}"
        n_images = len(rows)
    return FeatureKey(backbone=backbone.name, weights=backbone.weights_id,
                      transform=spec.describe(), dataset=data, n_images=n_images,
                      dim=backbone.num_features, precision=precision)


def compute_views(dataset: ImageDataset, backbone: Backbone, spec: TransformSpec,
                  views: tuple[str, ...] = ("identity",), *, cache_dir: Path | None,
                  subset: np.ndarray | None = None,
                  runtime: str = "torch", precision: str = "fp32", batch_size: int = 128,
                  num_workers: int | None = None, device: torch.device | None = None,
                  shard_size: int | None = None) -> dict[str, np.ndarray]:
    """``{view: (len(dataset), D) float32}`` features of every pool image (or ``(len(subset),
    D)`` of the pool indices ``subset``, in its order), cached when possible; ``spec``'s own
    view is replaced by each of ``views`` in turn (``identity``, ``hflip``, ``aug<k>``).

    Each image is decoded once for all its views. ``runtime`` (``auto``, ``torch``,
    ``openvino``, ``onnxruntime``) computes in ``precision`` on ``device``; it is built
    (and its export read from, or written to, ``cache_dir``) only when something is
    missing from the cache. Cached features come back memory-mapped and read-only.
    Random-weight backbones and ``cache_dir=None`` bypass the cache. An interrupted
    extraction keeps its finished shards of ``shard_size`` images (``None``:
    ``DEEPHASH_SHARD_SIZE`` or 4096) and resumes from them. Under torchrun the ranks share
    the shards and every rank gets the whole matrix (:mod:`deephash.features.cache`).
    The cache key's data fingerprint is remembered where the data set was opened to
    remember it: ``open_dataset(..., fingerprint_memo=memo_location(cache_dir))`` keeps
    everything under ``cache_dir``.
    """
    pool = np.arange(len(dataset)) if subset is None else np.asarray(subset, dtype=np.int64)
    bar = progress_bar(len(pool) * len(views),
                       f"features {backbone.name} {spec.image_size}px {'+'.join(views)}",
                       unit="img")
    engines: list[Runtime] = []

    def compute(rows: np.ndarray, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
        if not engines:  # built on first use: a cache hit needs no export
            engines.append(build_runtime(runtime, backbone, spec.image_size,
                                         precision=precision, cache_dir=cache_dir,
                                         device=device, n_images=len(pool) * len(wanted)))
        augmented = tuple(view for view in wanted if augmented_number(view) is not None)
        images = PixelImages(dataset, pool[rows], spec, augmented)
        return extract_views(engines[0], backbone, images, wanted, batch_size=batch_size,
                             num_workers=num_workers, on_batch=bar.update)

    try:
        if cache_dir is None or backbone.weights_id is None:
            if ranks().world > 1 and ranks().main:
                log.warning("without a feature cache (--no-cache, or random weights) the %d "
                            "processes cannot share the extraction: each computes every "
                            "image", ranks().world)
            return compute(np.arange(len(pool)), tuple(views))
        keys = {view: feature_key(backbone, dataset, dataclasses.replace(spec, view=view),
                                  precision, subset) for view in views}
        return FeatureCache(cache_dir, shard_size).get_or_compute_views(keys, compute,
                                                                        on_resume=bar.update)
    finally:
        bar.close()


def compute_features(dataset: ImageDataset, backbone: Backbone, spec: TransformSpec, *,
                     cache_dir: Path | None, runtime: str = "torch", precision: str = "fp32",
                     batch_size: int = 128, num_workers: int | None = None,
                     device: torch.device | None = None,
                     shard_size: int | None = None) -> np.ndarray:
    """``(len(dataset), D)`` float32 features of every pool image in ``spec``'s view,
    cached when possible: :func:`compute_views` of that one view."""
    return compute_views(dataset, backbone, spec, (spec.view,), cache_dir=cache_dir,
                         runtime=runtime, precision=precision, batch_size=batch_size,
                         num_workers=num_workers, device=device,
                         shard_size=shard_size)[spec.view]


__all__ = ["FeatureCache", "FeatureKey", "PixelImages", "compute_features", "compute_views",
           "extract_features", "extract_views", "feature_key", "transform_spec"]
