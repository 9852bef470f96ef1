"""Every image's header, read before any work: a file that cannot be decoded -- not an
image, or a decompression bomb (a small PNG that declares 30000 x 30000 pixels) -- is
found before a run folder is written, and named in one line.

PIL opens an image lazily: :func:`header_problem` reads its format and size without
decoding a pixel (about 50 us a file), and refuses more pixels than PIL decodes safely
(``Image.MAX_IMAGE_PIXELS``, 89 million: 268 MB of RGB). :func:`find_bad_images` checks
every image of a data set that is stored as encoded files (an image folder, a pack; the
official CIFAR-10 and MNIST releases hold pixels and have nothing to check) and remembers
the outcome beside the data set's content digests (``<fingerprint memo>/headers/``, keyed
by the files' names, sizes and modification times), so an untouched folder of 60,000
images is read once. :func:`checked_images` stops at the first bad image, or with
``skip=True`` (``--skip-bad-images``) leaves the bad ones out (:class:`SkippedImages`).

An image damaged after a sound header (truncated pixel data) is found only when it is
decoded: the extraction then stops with one line naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.dataset import ImageDataset
from deephash.data.decode import REPLACE, UNREADABLE, failure
from deephash.data.fingerprint import stat_digest
from deephash.errors import DataError
from deephash.fileio import save_bytes

log = logging.getLogger(__name__)

#: the fix a bad image's error names
SKIP = "or pass --skip-bad-images to leave such images out"


def header_problem(source: Path | bytes) -> str | None:
    """What is wrong with the encoded image ``source`` (a file, or its bytes) judging from
    its header alone; ``None`` when PIL can decode it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as image:
                width, height = image.size
    except UNREADABLE as exc:
        return failure(exc)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        return (f"too large to decode (a decompression bomb?): it declares {width} x {height} "
                f"= {width * height:,} pixels, more than PIL's limit of {limit:,}")
    if width < 1 or height < 1:
        return f"it declares {width} x {height} pixels"
    return None


@dataclass(frozen=True)
class BadImage:
    """An image of a data set that cannot be decoded: its pool index, where it is, why."""

    index: int
    where: str
    problem: str


def _memo_file(dataset: ImageDataset) -> Path | None:
    if dataset.fingerprint_memo is None:
        return None
    key = f"{stat_digest(*dataset.data_files())}\0{Image.MAX_IMAGE_PIXELS}"
    return dataset.fingerprint_memo / "headers" / hashlib.sha256(key.encode()).hexdigest()


def _remembered(memo: Path | None, n: int) -> list[BadImage] | None:
    if memo is None:
        return None
    try:
        rows = json.loads(memo.read_text())
        return [BadImage(int(i), str(where), str(why)) for i, where, why in rows
                if 0 <= int(i) < n]
    except (OSError, ValueError, TypeError):
        return None


def find_bad_images(dataset: ImageDataset) -> list[BadImage]:
    """Every image of ``dataset`` whose header PIL cannot read or that declares too many
    pixels (:func:`header_problem`), in pool order; remembered in the data set's
    ``fingerprint_memo`` (a read-only cache only costs a new check next time)."""
    if not len(dataset) or dataset.image_source(0) is None:
        return []  # the images are held as pixels, not as encoded files
    memo = _memo_file(dataset)
    known = _remembered(memo, len(dataset))
    if known is not None:
        return known
    bad = []
    for index in range(len(dataset)):
        source = dataset.image_source(index)
        problem = None if source is None else header_problem(source)
        if problem is not None:
            bad.append(BadImage(index, dataset.describe(index), problem))
    if memo is not None:
        with contextlib.suppress(OSError):  # a read-only cache: checked again next time
            save_bytes(memo, json.dumps([[b.index, b.where, b.problem] for b in bad]).encode())
    return bad


class SkippedImages(ImageDataset):
    """``base`` without the images ``skipped`` (pool indices), renumbered in pool order.

    Its fingerprint is the base's content digest joined with the skipped images' names, so
    the features cached for it are its own.
    """

    def __init__(self, base: ImageDataset, skipped: list[BadImage]) -> None:
        self.base = base
        self.skipped = skipped
        drop = np.zeros(len(base), dtype=bool)
        drop[[b.index for b in skipped]] = True
        self.kept = np.flatnonzero(~drop)
        self.name = f"{base.name} without {len(skipped)} bad image(s)"
        self.classes = base.classes
        self.labels = base.labels[self.kept]
        self.is_test = base.is_test[self.kept]
        self.parts = None if base.parts is None else {
            name: np.searchsorted(self.kept, rows[~drop[rows]]).astype(np.int64)
            for name, rows in base.parts.items()}
        self.fingerprint_memo = base.fingerprint_memo
        self.check()

    def load_image(self, index: int) -> Image.Image:
        return self.base.load_image(int(self.kept[index]))

    def load_pixels(self, index: int) -> np.ndarray:
        return self.base.load_pixels(int(self.kept[index]))

    def describe(self, index: int) -> str:
        return self.base.describe(int(self.kept[index]))

    def image_source(self, index: int) -> Path | bytes | None:
        return self.base.image_source(int(self.kept[index]))

    def data_files(self) -> tuple[Path, list[str]]:
        root, names = self.base.data_files()
        return root, list(names)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(self.base.fingerprint().encode())
            for bad in self.skipped:
                digest.update(f"\0skipped\0{bad.where}".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


def checked_images(dataset: ImageDataset, skip: bool = False) -> ImageDataset:
    """``dataset`` once every image's header is sound; else a :class:`DataError` naming the
    first bad image, or with ``skip`` the data set without the bad ones (a warning gives
    their count, :func:`skipped_images` lists them for ``run.json``)."""
    bad = find_bad_images(dataset)
    if not bad:
        return dataset
    if not skip:
        more = f" (and {len(bad) - 1} more bad image(s))" if len(bad) > 1 else ""
        raise DataError(f"cannot read image {bad[0].where}: {bad[0].problem}{more}; "
                        f"{REPLACE}, {SKIP}")
    log.warning("skipping %d bad image(s) of %s (--skip-bad-images; listed in run.json), "
                "the first: %s: %s", len(bad), dataset.name, bad[0].where, bad[0].problem)
    return SkippedImages(dataset, bad)


def skipped_images(dataset: ImageDataset) -> list[dict[str, str]]:
    """The images :func:`checked_images` left out of ``dataset`` (for ``run.json``)."""
    if not isinstance(dataset, SkippedImages):
        return []
    return [{"image": bad.where, "problem": bad.problem} for bad in dataset.skipped]
