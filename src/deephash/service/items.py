"""What an index folder knows of each indexed image: its path, label and class.

``items.npz`` holds per row ``paths`` (relative to the data root, or a data set's own
description such as ``cifar10:test[17]``), ``labels`` (``-1``: none), the ``classes`` and,
since images can be added to an index, ``local`` (the path is relative to the index folder:
an added image kept in ``added/``). Folders written before ``local`` existed read as all
``False``. Row ``r`` is item id ``r``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.fileio import load_npz, npz_array, save_npz


@dataclass(frozen=True)
class Items:
    paths: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int64, -1 for an unlabelled image
    classes: tuple[str, ...]
    local: np.ndarray  # (N,) bool: the path is relative to the index folder

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def load(cls, path: Path) -> Items:
        """The items saved at ``path``, their structure checked (text paths and classes,
        integer labels, boolean ``local``, one row each): anything else is a one-line
        ``ConfigError`` naming the file."""
        try:
            arrays = load_npz(path)
            paths = npz_array(arrays, "paths", "U", 1)
            labels = np.asarray(npz_array(arrays, "labels", "iu", 1), dtype=np.int64)
            local = (np.asarray(npz_array(arrays, "local", "b", 1), dtype=bool)
                     if "local" in arrays else np.zeros(len(paths), dtype=bool))
            classes = tuple(str(c) for c in npz_array(arrays, "classes", "U", 1))
            if not len(paths) == len(labels) == len(local):
                raise ValueError(f"it has {len(paths)} paths, {len(labels)} labels and "
                                 f"{len(local)} local flags")
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"cannot read {path}: {reason}; rebuild with deephash "
                              "index") from None
        return cls(paths.astype(str), labels, classes, local)

    def save(self, path: Path) -> None:
        save_npz(path, paths=self.paths, labels=self.labels, classes=np.array(self.classes),
                 local=self.local)

    def class_name(self, row: int) -> str | None:
        label = int(self.labels[row])
        return self.classes[label] if 0 <= label < len(self.classes) else None

    def describe(self, row: int) -> dict[str, Any]:
        """The JSON record of item ``row``: ``{"id", "label", "class", "path"}``, the path
        as stored (relative to the data root, or to the index folder for an added image)."""
        label = int(self.labels[row])
        return {"id": int(row), "label": label if label >= 0 else None,
                "class": self.class_name(row), "path": str(self.paths[row])}

    def label_of(self, given: str) -> tuple[int, tuple[str, ...]]:
        """The label of ``given`` (a class name, or a class number) and the classes with a
        new name appended."""
        given = given.strip()
        if given in self.classes:
            return self.classes.index(given), self.classes
        if given.lstrip("-").isdigit():
            label = int(given)
            if not 0 <= label < len(self.classes):
                raise ConfigError(f"label {label} is not a class number (0..{len(self.classes) - 1}"
                                  "); give a class number or a class name")
            return label, self.classes
        if not given or len(given) > 100 or not given.isprintable():
            raise ConfigError("label must be a class name of 1 to 100 printable characters or a "
                              "class number; fix the label field")
        return len(self.classes), (*self.classes, given)

    def extended(self, paths: list[str], label: int, classes: tuple[str, ...]) -> Items:
        """These items followed by added images at ``paths`` (relative to the index folder),
        all labelled ``label``."""
        n = len(paths)
        return Items(np.concatenate([self.paths.astype(str), np.array(paths, dtype=str)]),
                     np.concatenate([self.labels, np.full(n, label, dtype=np.int64)]),
                     classes, np.concatenate([self.local, np.ones(n, dtype=bool)]))
