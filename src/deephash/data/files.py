"""Data sets whose images are files under one root folder, named by relative paths.

:class:`FileImages` is what image folders, class folders, list files and CSV files have in
common: a ``root`` and, per pool index, the image's path relative to it. It reads,
describes and fingerprints the images; a subclass only finds the paths and the labels.
:func:`relative_image_path` is the one check of a path a list or a CSV names.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.dataset import ImageDataset
from deephash.data.decode import open_rgb, read_rgb_pixels

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")


def is_image_name(name: str) -> bool:
    """Whether a file name is an image deephash reads (by extension; hidden files are not)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: Path) -> list[str]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_file() and is_image_name(entry.name))


def relative_image_path(root: Path, text: str) -> str | None:
    """``text`` (a path a list file or a CSV names) as a normalised path relative to
    ``root``, with ``/`` separators; ``None`` when it leaves ``root`` (``..`` past it, or an
    absolute path elsewhere). The check is on the names, not on where symbolic links
    point: a link inside ``root`` to a file elsewhere is the user's own choice."""
    path = text.replace("\\", "/") if os.sep == "\\" else text
    if posixpath.isabs(path):
        base = str(root.absolute()).replace(os.sep, "/")
        if not (path == base or path.startswith(base.rstrip("/") + "/")):
            return None
        path = path[len(base.rstrip("/")) + 1:]
    normal = posixpath.normpath(path)
    if normal in (".", "") or normal == ".." or normal.startswith("../"):
        return None
    return normal


class FileImages(ImageDataset):
    """Images stored as files ``root / paths[i]`` (``paths`` relative, ``/``-separated).

    Subclasses set ``root``, ``paths``, ``name``, ``classes``, ``labels`` and ``is_test``
    (and ``parts`` when the data bring their own splits).
    """

    root: Path
    paths: list[str]

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
