"""The data set a configuration names, split by its protocol, and the splits file."""

from __future__ import annotations

from pathlib import Path

from deephash.data import ImageDataset, Splits, make_splits, open_dataset
from deephash.data.fingerprint import memo_location
from deephash.pipeline.cache import cache_location
from deephash.pipeline.config import BaselineConfig


def open_protocol(config: BaselineConfig) -> tuple[ImageDataset, Splits]:
    """The data set of ``config.data`` and its seeded splits (``config.seed``) under
    ``config.data.protocol``: pool indices of train, val, query and database."""
    dataset = open_dataset(config.data.data_dir, config.data.dataset, config.data.download,
                           memo_location(cache_location(config.extraction)))
    splits = make_splits(config.data.protocol, dataset.labels, dataset.is_test, config.seed,
                         classes=dataset.classes)
    return dataset, splits


def write_splits(run: Path, splits: Splits, dataset: ImageDataset) -> None:
    """``run/splits.json``: the protocol's pool indices and what identifies the pool."""
    splits.to_json(run / "splits.json", extra={
        "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
        "n_pool": len(dataset), "classes": dataset.classes,
        "pool_order": "official training part, then test part; image folders sorted by "
                      "class then file name",
    })
