"""An unlabelled folder: every image under a folder, at any depth, without labels.

What someone who simply wants to index and search their photos has: ``deephash index``,
``search`` and ``serve`` take it (retrieval needs no labels; no relevance is marked and no
metric is computed), ``train``, ``baseline`` and ``hash`` refuse it, as any data without
labels, in one line before any extraction (:func:`require_labels`).

The images are the files under the folder whose names end in one of
:data:`~deephash.data.files.IMAGE_EXTENSIONS` (any case), hidden files and folders
(a name starting with ``.``) left out, in the order of their relative paths (compared
folder by folder, so ``a/z.jpg`` comes before ``a-b/c.jpg``). Links: a linked folder is
not entered (a link to a parent would never end, a link to a sibling would index its
images twice); a linked file is taken when its target lies inside the folder and skipped
otherwise, with one warning that counts them, so that serving the folder never reads a
file outside it (``deephash serve`` shows each item's image to its clients).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

import numpy as np

from deephash.data.dataset import ImageDataset
from deephash.data.files import IMAGE_EXTENSIONS, FileImages, is_image_name
from deephash.errors import DataError
from deephash.labels import UNLABELLED, LabelSet, LabelsLike, as_label_set

log = logging.getLogger(__name__)


def find_images(root: Path) -> tuple[list[str], list[str]]:
    """The image files under ``root`` (module docstring) as POSIX paths relative to it,
    sorted; and the linked files skipped because their target lies outside ``root``."""
    inside = root.resolve()
    found: list[str] = []
    outside: list[str] = []
    for folder, folders, files in os.walk(root):  # linked folders are not entered
        folders[:] = [name for name in folders if not name.startswith(".")]
        where = Path(folder)
        for name in files:
            if not is_image_name(name):
                continue
            path = where / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                outside.append(relative)
            elif path.is_file():
                found.append(relative)
    return sorted(found, key=lambda p: PurePosixPath(p).parts), sorted(outside)


def require_labels(dataset: ImageDataset) -> None:
    """Refuse data of which no image has a label (an unlabelled folder, a CSV without a
    ``label`` column) where labels are needed: the training and evaluation commands call it
    as soon as the data are open, before anything is extracted or created."""
    if len(dataset):
        require_labelled(dataset.labels, dataset.name)


def require_labelled(labels: LabelsLike, name: str = "the data set") -> None:
    """The one rule behind :func:`require_labels`, for label sets without their data set
    (``(N,)`` ids, ``(N, C)`` multi-hot or a :class:`~deephash.labels.LabelSet`): at least
    one image must carry a label (``DataError``, one line)."""
    if not as_label_set(labels).labelled.any():
        raise DataError(f"{name} has no labels: train, baseline and hash need labelled "
                        "images (train/<class>/ and test/<class>/ folders, class folders, list "
                        "files or a CSV with a label column); index, search and serve take "
                        "unlabelled images as they are")


class UnlabelledFolderDataset(FileImages):
    """Every image under ``root`` (module docstring), none labelled: ``classes`` is empty,
    ``labels`` an all-unlabelled single-label set over 0 classes, no image is in a test
    part and the data brings no splits (``parts`` is ``None``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"{self.root.name} (unlabelled folder)"
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder; pass --data-dir with the folder "
                            "of images to index")
        self.paths, outside = find_images(self.root)
        if outside:
            log.warning("skipping %d linked file(s) whose target is outside %s, the first: %s",
                        len(outside), self.root, outside[0])
        if not self.paths:
            raise DataError(f"{self.root} holds no images (looked at any depth for "
                            f"{', '.join(IMAGE_EXTENSIONS)}); pass the folder of your images")
        self.classes = []
        self.labels = LabelSet.from_ids(np.full(len(self.paths), UNLABELLED, np.int64), 0)
        self.is_test = np.zeros(len(self.paths), dtype=bool)
        self.parts = None
        self.check()
