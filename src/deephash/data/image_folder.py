"""Image folders: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (with the official
split), and class folders ``ROOT/<class>/*`` (torchvision's ``ImageFolder``, no split)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deephash.data.files import IMAGE_EXTENSIONS, FileImages, list_images
from deephash.errors import DataError
from deephash.labels import LabelSet


def class_folders(folder: Path) -> list[str]:
    """The sub-folders of ``folder`` (hidden ones left out), sorted by name."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _class_images(base: Path, prefix: str, classes: list[str], required: bool
                  ) -> tuple[list[str], list[int]]:
    """Paths (``prefix`` + ``<class>/<file>``) and class ids of the images directly in each
    ``base/<class>`` folder, by class then file name; ``required``: every class folder must
    exist and hold an image."""
    paths: list[str] = []
    ids: list[int] = []
    for label, cls in enumerate(classes):
        folder = base / cls
        if not folder.is_dir():
            continue
        names = list_images(folder)
        if required and not names:
            raise DataError(f"class folder {folder} has no images "
                            f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(f"{prefix}{cls}/{n}" for n in names)
        ids.extend([label] * len(names))
    return paths, ids


class ImageFolderDataset(FileImages):
    """Images sorted by (part, class name, file name); classes are ``train/``'s folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"{self.root.name} (image folder)"
        for part in ("train", "test"):
            if not (self.root / part).is_dir():
                raise DataError(
                    f"{self.root} has no {part}/ folder; an image-folder data set needs "
                    f"{self.root}/train/<class>/*.jpg and {self.root}/test/<class>/*.jpg"
                )
        self.classes = class_folders(self.root / "train")
        unknown = sorted(set(class_folders(self.root / "test")) - set(self.classes))
        if unknown:
            raise DataError(
                f"{self.root}/test has class folder(s) {', '.join(unknown)} that train/ lacks; "
                "every test class needs training images"
            )
        train, train_ids = _class_images(self.root / "train", "train/", self.classes, True)
        test, test_ids = _class_images(self.root / "test", "test/", self.classes, False)
        self.paths = train + test
        self.labels = LabelSet.from_ids(np.asarray(train_ids + test_ids, dtype=np.int64),
                                        len(self.classes))
        self.is_test = np.arange(len(self.paths)) >= len(train)
        self.check()


class ClassFolderDataset(FileImages):
    """``ROOT/<class>/<image>`` (torchvision's ``ImageFolder``): one class per sub-folder,
    images sorted by (class name, file name), no test part (``is_test`` all false,
    ``parts`` ``None``): a protocol draws the splits, seeded. Only images directly in a
    class folder count (deeper folders are not looked into)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.name = f"{self.root.name} (class folders)"
        self.classes = class_folders(self.root)
        paths, ids = _class_images(self.root, "", self.classes, True)
        self.paths = paths
        self.labels = LabelSet.from_ids(np.asarray(ids, dtype=np.int64), len(self.classes))
        self.is_test = np.zeros(len(paths), dtype=bool)
        self.check()
