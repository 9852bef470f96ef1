"""The baseline study: frozen pretrained features, measured on a protocol.

``run_baseline`` opens the data set, writes the seeded splits, extracts (or reads cached)
backbone features of every pool image, and evaluates them: validation queries against
the training part (for later model selection) and the test protocol (query against
database), with kNN accuracy, mAP, precision@k, a PR curve and a t-SNE map.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import Backbone, create_backbone
from deephash.data import ImageDataset, Splits, make_splits, open_dataset
from deephash.data.fingerprint import default_cache_root, memo_location
from deephash.devices import resolve_device
from deephash.features import compute_views, transform_spec
from deephash.studies.baseline_config import BaselineConfig, ExtractionConfig
from deephash.studies.report import validation_report, write_results
from deephash.studies.run_folder import open_run, write_splits
from deephash.validation import validate

log = logging.getLogger(__name__)


def cache_location(cfg: ExtractionConfig) -> Path | None:
    """The feature cache root, or ``None`` when caching is off."""
    if not cfg.cache:
        return None
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_root()


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


def open_protocol(config: BaselineConfig) -> tuple[ImageDataset, Splits]:
    dataset = open_dataset(config.data.data_dir, config.data.dataset, config.data.download,
                           memo_location(cache_location(config.extraction)))
    splits = make_splits(config.data.protocol, dataset.labels, dataset.is_test, config.seed,
                         classes=dataset.classes)
    return dataset, splits


def run_baseline(config: BaselineConfig) -> dict[str, Any]:
    """Run the study into ``config.out``; returns the metrics written to ``metrics.json``."""
    validate(config)
    folder = open_run(config.out, config, overwrite=config.overwrite)
    dataset, splits = open_protocol(config)
    device = resolve_device(config.extraction.device)
    with folder:
        run = folder.path
        folder.device = str(device)
        write_splits(run, splits, dataset)
        log.info("%s: %d images, %d classes; protocol %s: %s", dataset.name, len(dataset),
                 len(dataset.classes), splits.protocol, splits.sizes())
        start = time.perf_counter()
        features = load_features(config, dataset, device)["identity"]
        folder.seconds["features"] = time.perf_counter() - start
        val = validation_report(features, dataset.labels, splits, config.evaluation)
        folder.seconds["validation"] = time.perf_counter() - start - folder.seconds["features"]
        title = f"{config.backbone.name} {config.backbone.image_size}px on {dataset.name}"
        metrics = write_results(run, features, dataset, splits, config.evaluation, config.seed,
                                title,
                                extra_metrics={f"val_{k}": v for k, v in val.metrics.items()})
    log.info("wrote %s: %s", run, {k: round(v, 4) for k, v in metrics.items()
                                   if isinstance(v, float)})
    return metrics
