"""The data set a configuration names, split by its protocol, and the splits file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deephash.data import ImageDataset, Splits, make_splits, open_dataset
from deephash.data.fingerprint import memo_location
from deephash.data.headers import checked_images, skipped_images
from deephash.pipeline.cache import cache_location
from deephash.pipeline.config import BaselineConfig


def open_protocol(config: BaselineConfig) -> tuple[ImageDataset, Splits]:
    """The data set of ``config.data`` and its seeded splits (``config.seed``) under
    ``config.data.protocol``: pool indices of train, val, query and database.

    The data's content digest is taken (a pack checks its own) and every image's header
    checked here, before any run folder is written: an unreadable image or a
    decompression bomb stops with one line (or is left out: ``--skip-bad-images``)."""
    dataset = open_dataset(config.data.data_dir, config.data.dataset, config.data.download,
                           image_root=config.data.image_root)
    # read before the cache folder is made: a bad list line stops with nothing created
    dataset.fingerprint_memo = memo_location(cache_location(config.extraction))
    dataset.fingerprint()  # a damaged pack says so before its images are looked at
    dataset = checked_images(dataset, config.data.skip_bad_images)
    splits = make_splits(config.data.protocol, dataset.labels, dataset.is_test, config.seed,
                         classes=dataset.classes)
    return dataset, splits


def skipped_run_details(dataset: ImageDataset) -> dict[str, Any]:
    """``{"skipped_images": [...]}`` for ``run.json`` when ``--skip-bad-images`` left
    images out of ``dataset``; else nothing."""
    skipped = skipped_images(dataset)
    return {"skipped_images": skipped} if skipped else {}


def write_splits(run: Path, splits: Splits, dataset: ImageDataset) -> None:
    """``run/splits.json``: the protocol's pool indices and what identifies the pool."""
    splits.to_json(run / "splits.json", extra={
        "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
        "n_pool": len(dataset), "classes": dataset.classes,
        "pool_order": "official training part, then test part; image folders sorted by "
                      "class then file name",
    })
