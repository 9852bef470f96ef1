"""The data set a configuration names, split by its protocol, and the splits file."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from deephash.data import ImageDataset, Splits, make_splits, open_dataset
from deephash.data.fingerprint import memo_location
from deephash.data.headers import checked_images, skipped_images
from deephash.data.protocols import AUTO_CHOICES
from deephash.data.unlabelled import require_labels
from deephash.pipeline.cache import cache_location
from deephash.pipeline.config import BaselineConfig, EvalConfig
from deephash.training.config import TrainConfig
from deephash.training.label_support import check_labels_supported

log = logging.getLogger(__name__)


def open_protocol(config: BaselineConfig) -> tuple[ImageDataset, Splits]:
    """The data set of ``config.data`` and its seeded splits (``config.seed``) under
    ``config.data.protocol``: pool indices of train, val, query and database.

    The protocol is applied first (a protocol the data cannot serve is refused before the
    feature cache is touched), then the data's content digest is taken (a pack checks its
    own) and every image's header checked, before any run folder is written: an
    unreadable image or a decompression bomb stops with one line (or is left out:
    ``--skip-bad-images``)."""
    opened = open_dataset(config.data.data_dir, config.data.dataset, config.data.download,
                          image_root=config.data.image_root)
    require_labels(opened)  # data without any label: one line, nothing created
    if isinstance(config, TrainConfig):  # labels no loss or procedure can train on
        check_labels_supported(config, opened.labels)
    splits = _splits(config, opened)  # a protocol the data cannot serve: before the cache
    opened.fingerprint_memo = memo_location(cache_location(config.extraction))
    opened.fingerprint()  # a damaged pack says so before its images are looked at
    dataset = checked_images(opened, config.data.skip_bad_images)
    if dataset is not opened:  # bad images left out: the pool changed
        splits = _splits(config, dataset)
    if config.data.protocol == "auto":
        log.info("protocol auto: %s (%s)", splits.protocol, AUTO_CHOICES[splits.protocol])
    return dataset, splits


def _splits(config: BaselineConfig, dataset: ImageDataset) -> Splits:
    return make_splits(config.data.protocol, dataset.labels, dataset.is_test, config.seed,
                       classes=dataset.classes, parts=dataset.parts)


def protocol_evaluation(cfg: EvalConfig, splits: Splits) -> EvalConfig:
    """``cfg`` with the protocol's headline cut-off added to ``map_cutoffs`` (``map@5000``
    of ``nus-wide-21``), so ``metrics.json`` holds the figure the field reports; ``cfg``
    itself for protocols without one (``cifar10``, ``dtsh-1``) or a cut-off already asked
    for."""
    k = splits.map_cutoff
    if k is None or k in cfg.map_cutoffs:
        return cfg
    return dataclasses.replace(cfg, map_cutoffs=(*cfg.map_cutoffs, k))


def skipped_run_details(dataset: ImageDataset) -> dict[str, Any]:
    """``{"skipped_images": [...]}`` for ``run.json`` when ``--skip-bad-images`` left
    images out of ``dataset``; else nothing."""
    skipped = skipped_images(dataset)
    return {"skipped_images": skipped} if skipped else {}


def write_splits(run: Path, splits: Splits, dataset: ImageDataset) -> None:
    """``run/splits.json``: the protocol's pool indices and what identifies the pool."""
    extra: dict[str, Any] = {}
    if splits.held_out:
        extra["held_out_classes"] = [dataset.classes[c] for c in splits.held_out]
    splits.to_json(run / "splits.json", extra={
        **extra, "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
        "n_pool": len(dataset), "classes": dataset.classes,
        "pool_order": "official training part, then test part; image folders sorted by "
                      "class then file name",
    })
