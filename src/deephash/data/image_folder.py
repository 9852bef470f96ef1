"""Image-folder data sets: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.dataset import ImageDataset
from deephash.data.decode import open_rgb, read_rgb_pixels
from deephash.errors import DataError
from deephash.labels import LabelSet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")


def _list_images(folder: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".")
        and entry.name.lower().endswith(IMAGE_EXTENSIONS)
    )


def _class_folders(part: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(part) if e.is_dir() and not e.name.startswith("."))


class ImageFolderDataset(ImageDataset):
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
        self.classes = _class_folders(self.root / "train")
        test_classes = _class_folders(self.root / "test")
        unknown = sorted(set(test_classes) - set(self.classes))
        if unknown:
            raise DataError(
                f"{self.root}/test has class folder(s) {', '.join(unknown)} that train/ lacks; "
                "every test class needs training images"
            )
        paths: list[str] = []
        labels: list[int] = []
        is_test: list[bool] = []
        for part in ("train", "test"):
            for label, cls in enumerate(self.classes):
                folder = self.root / part / cls
                if not folder.is_dir():
                    continue
                names = _list_images(folder)
                if part == "train" and not names:
                    raise DataError(f"class folder {folder} has no images "
                                    f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
                paths.extend(f"{part}/{cls}/{n}" for n in names)
                labels.extend([label] * len(names))
                is_test.extend([part == "test"] * len(names))
        self.paths = paths
        self.labels = LabelSet.from_ids(np.asarray(labels, dtype=np.int64), len(self.classes))
        self.is_test = np.asarray(is_test, dtype=bool)
        self.check()

    def load_image(self, index: int) -> Image.Image:
        return open_rgb(self.root / self.paths[index])

    def load_pixels(self, index: int) -> np.ndarray:
        return read_rgb_pixels(self.root / self.paths[index])

    def image_source(self, index: int) -> Path:
        return self.root / self.paths[index]

    def describe(self, index: int) -> str:
        return str(self.root / self.paths[index])

    def data_files(self) -> tuple[Path, list[str]]:
        return self.root, self.paths
