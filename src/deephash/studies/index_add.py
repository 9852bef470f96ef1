"""``deephash index --add DIR --out INDEX``: add a folder's images to an index folder as one
append segment (:mod:`deephash.service.segments`), O(|DIR|) written, as ``POST /items``
adds them.

The images are embedded by the checkpoint that built the index (``index.json`` names it;
``--checkpoint`` overrides it, and must give vectors of the index's kind and size), with
the index's own transform. Their files are copied into ``INDEX/added/<id>.<ext>``, so the
items are the index folder's own, like the service's uploads; their labels are DIR's
classes by name (a class the index does not know is appended; an unlabelled folder adds
unlabelled items). Everything is checked before anything is embedded or written: the index
folder exists, DIR is a folder of image files. A server holding the folder open refuses
its next add (409) until restarted; a restarted server loads the added items.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from deephash.data import open_dataset
from deephash.data.dataset import ImageDataset
from deephash.data.fingerprint import memo_location
from deephash.devices import resolve_device
from deephash.errors import ConfigError
from deephash.features import compute_views, transform_spec
from deephash.labels import LabelSet
from deephash.pipeline.cache import cache_location
from deephash.service.embedder import (
    feature_backbone,
    outputs_of_features,
    vectors_of_outputs,
    views_of,
)
from deephash.service.folder import check_fits, checkpoint_path, read_info
from deephash.service.items import Items
from deephash.service.state import grown, load_state
from deephash.service.store import COMPACTION, append_images, compact, due
from deephash.studies.configs import IndexConfig
from deephash.training.checkpoint import load_model

log = logging.getLogger(__name__)


def add_folder(config: IndexConfig) -> dict[str, Any]:
    """Add the images of ``config.add`` to the index folder ``config.out`` (module
    docstring); return its ``index.json``. ``config`` was validated."""
    out = Path(config.out).expanduser()
    info = read_info(out)
    checkpoint = checkpoint_path(out, info, config.checkpoint or None)
    train_config, model = load_model(checkpoint)
    codes, dim = train_config.training.codes, train_config.training.embedding_dim
    check_fits(codes, dim, info, checkpoint)
    cache = cache_location(config)
    dataset = open_dataset(str(config.add), config.dataset, download=False,
                           fingerprint_memo=memo_location(cache), image_root=config.image_root)
    files = _image_files(dataset, str(config.add))
    state = load_state(out, info)
    labels, classes = _mapped_labels(dataset, state.items)
    backbone = feature_backbone(train_config)
    spec = transform_spec(backbone, train_config.backbone.image_size)
    views = compute_views(dataset, backbone, spec, views_of(train_config), cache_dir=cache,
                          runtime="auto", precision=train_config.extraction.precision,
                          device=resolve_device(config.device))
    outputs = outputs_of_features(model, [views[view] for view in views_of(train_config)])
    images = [(path.read_bytes(), path.suffix.lstrip(".").lower() or "img") for path in files]
    segment, nbytes = append_images(state, vectors_of_outputs(outputs, codes), images, labels,
                                    classes, outputs if state.outputs is not None else None)
    log.info("added %d images of %s to %s (items %d..%d)", len(segment), config.add, out,
             segment.start, segment.start + len(segment) - 1)
    added = grown(state, segment, nbytes)
    if due(added, *COMPACTION):
        added = compact(added)
    return added.info


def _image_files(dataset: ImageDataset, where: str) -> list[Path]:
    """Each image's file, in the data set's order; a one-line error for a data set whose
    images are not files (CIFAR-10, a pack)."""
    found = []
    for row in range(len(dataset)):
        source = dataset.image_source(row)
        if not isinstance(source, Path):
            raise ConfigError(f"--add {where}: its images are not files ({dataset.name}); "
                              "pass a folder of image files")
        found.append(source)
    if not found:
        raise ConfigError(f"--add {where} holds no images; pass a folder of image files")
    return found


def _mapped_labels(dataset: ImageDataset, items: Items) -> tuple[LabelSet, tuple[str, ...]]:
    """The data set's labels over the index's classes (its class names looked up, new
    ones appended), and those classes."""
    classes, targets = items.classes, []
    for name in dataset.classes:
        target, classes = _label_in(str(name), classes)
        targets.append(target)
    mapped = np.zeros((len(dataset), len(classes)), dtype=bool)
    mapped[:, targets] = dataset.labels.multi_hot[:, :len(targets)]
    return LabelSet.from_multi_hot(mapped), classes


def _label_in(name: str, classes: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
    """The id of class ``name`` in ``classes`` (appended when new), by name only."""
    if name in classes:
        return classes.index(name), classes
    return len(classes), (*classes, name)
