"""The one data-set abstraction every part of deephash reads images through."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.fingerprint import content_fingerprint
from deephash.errors import DataError
from deephash.labels import LabelSet


class ImageDataset(abc.ABC):
    """All images of a data set: the official training part first, then the test part.

    An index in ``range(len(self))`` is a *pool index*; splits, feature caches and saved
    embeddings all refer to images by it.

    Attributes:
        name: human-readable name for reports.
        classes: class names; class id ``c`` means ``classes[c]``.
        labels: the images' label sets (:class:`~deephash.labels.LabelSet`): ``(N,)`` class
            ids for single-label data, an ``(N, C)`` multi-hot matrix for multi-label data;
            an image without labels has an empty set.
        is_test: ``(N,)`` bool, True for images of the official test part.
        parts: the data's own splits when it brings them (list files, a CSV's ``split``
            column): ``{"train" | "query" | "database": (n,) int64 sorted pool indices}``,
            else ``None`` (a protocol draws the splits).
        fingerprint_memo: where :meth:`fingerprint` remembers content digests (the
            feature cache's ``fingerprints/`` folder, chosen by ``open_dataset``); ``None``
            hashes the files and writes nothing.
    """

    name: str
    classes: list[str]
    labels: LabelSet
    is_test: np.ndarray
    parts: dict[str, np.ndarray] | None = None
    fingerprint_memo: Path | None = None
    _fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @abc.abstractmethod
    def load_image(self, index: int) -> Image.Image:
        """The image at ``index`` as RGB; raises :class:`DataError` naming the file."""

    def load_pixels(self, index: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 pixels of the image at ``index``, exactly
        ``np.array(self.load_image(index))`` (subclasses may read them faster); raises
        :class:`DataError` naming the file."""
        return np.array(self.load_image(index))

    def image_source(self, index: int) -> Path | bytes | None:
        """The encoded image ``index`` as stored: its file (an image folder) or its bytes (a
        pack); ``None`` for data sets that hold pixels (the official releases). The header
        check (:mod:`deephash.data.headers`) reads it before any work."""
        return None

    @abc.abstractmethod
    def describe(self, index: int) -> str:
        """Where image ``index`` comes from (a path, or ``cifar10:test[17]``)."""

    @abc.abstractmethod
    def data_files(self) -> tuple[Path, Sequence[str]]:
        """The folder and the names (relative to it) of every file the images come from."""

    def fingerprint(self) -> str:
        """A digest that changes whenever any data file changes (cache key input): the
        content digest of :meth:`data_files`, computed once per object and remembered in
        ``fingerprint_memo``; see :mod:`deephash.data.fingerprint`."""
        if self._fingerprint is None:
            self._fingerprint = content_fingerprint(*self.data_files(), self.fingerprint_memo)
        return self._fingerprint

    def check(self) -> None:
        """Refuse data without images, and labelled data with fewer than two classes (no
        retrieval to measure).

        Unlabelled data (no image has a label) pass: they can be indexed and searched. A
        protocol that needs an official test part says so itself."""
        if not len(self):
            raise DataError(f"{self.name}: holds no images")
        if self.labels.labelled.any() and len(self.classes) < 2:
            raise DataError(
                f"{self.name}: found {len(self.classes)} class(es) "
                f"({', '.join(self.classes) or 'none'}); retrieval needs at least 2 classes"
            )
