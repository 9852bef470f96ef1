"""A pack header's labels and splits, as JSON data (nothing pickled).

Format 1 (every pack before label sets, and still every pack whose data allow it: one
label per image, every image labelled, no splits of its own) stores ``labels``: one class
id per image. Format 2 stores ``label_sets``: per image the ascending list of its class
ids (``[]``: unlabelled), and ``parts``: the data's own splits (``{"train" | "query" |
"database": [pool indices]}``) or ``null``. A format-1 pack is thus byte for byte what it
was, and a deephash that reads only format 1 refuses a format-2 pack in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deephash.data.dataset import ImageDataset
from deephash.labels import LabelSet

#: the formats :func:`read_labels` reads
FORMATS = (1, 2)


def label_fields(dataset: ImageDataset) -> tuple[int, dict[str, Any]]:
    """``(format, header fields)`` holding ``dataset``'s labels and parts."""
    labels = dataset.labels
    if labels.is_single and labels.labelled.all() and dataset.parts is None:
        return 1, {"labels": [int(label) for label in labels.ids]}
    parts = None if dataset.parts is None else {
        name: [int(i) for i in rows] for name, rows in sorted(dataset.parts.items())}
    return 2, {"label_sets": labels.lists(), "parts": parts}


def read_labels(header: dict[str, Any], version: int, n_images: int,
                n_classes: int) -> tuple[LabelSet, dict[str, np.ndarray] | None]:
    """The label set and parts a header of format ``version`` holds; ``ValueError`` (or
    ``KeyError``/``TypeError``) when they do not fit ``n_images`` and ``n_classes``."""
    if version == 1:
        ids = np.asarray(header["labels"], dtype=np.int64)
        if ids.shape != (n_images,) or not ((ids >= 0) & (ids < n_classes)).all():
            raise ValueError("labels do not fit the images and classes")
        return LabelSet.from_ids(ids, n_classes), None
    lists = header["label_sets"]
    if not isinstance(lists, list) or len(lists) != n_images:
        raise ValueError("label_sets do not fit the images")
    rows = [np.asarray(row, dtype=np.int64).reshape(-1) for row in lists]
    if any(((row < 0) | (row >= n_classes)).any() for row in rows):
        raise ValueError("label_sets name classes the pack does not have")
    labels = LabelSet.from_lists(rows, n_classes)
    parts = header["parts"]
    if parts is None:
        return labels, None
    if not isinstance(parts, dict):
        raise ValueError("parts is not a mapping")
    read = {str(name): np.asarray(part, dtype=np.int64).reshape(-1)
            for name, part in parts.items()}
    for part in read.values():
        if len(part) and (part.min() < 0 or part.max() >= n_images
                          or (np.diff(part) <= 0).any()):
            raise ValueError("parts are not ascending pool indices")
    return labels, read
