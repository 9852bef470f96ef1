"""Packed data sets: one file holding every image's encoded bytes, its labels and order.

``deephash pack DATA_DIR FILE`` (:func:`write_pack`) writes, and ``--data-dir FILE``
(:class:`PackedDataset`) reads, this layout (formats 1 and 2)::

    MAGIC              19 bytes, b"\\x89deephash-pack\\r\\n\\x1a\\n" (PNG-style: a text-mode
                       copy or a foreign file fails at once)
    version, length    uint32 and uint64, little-endian: format version, header bytes
    header             JSON (ASCII, sorted keys): name, classes, fingerprint and, per image
                       in pool order, names, is_test, sizes (bytes), heights, widths; the
                       labels (and the data's own splits) as :mod:`~deephash.data.pack_labels`
                       says: format 1 one class id per image, format 2 label lists and parts
    data               every image's encoded file bytes, concatenated in pool order

Every kind of data set packs (image and class folders, list files, CSV files, unlabelled
folders, the official releases), multi-label ones as format 2. Nothing is unpickled: the
header is JSON and the data are the images' own bytes. A folder's
images are stored as their ORIGINAL files (JPEG, PNG, ...), never re-encoded, under the
names the folder's ``data_files()`` gives them, so a pack decodes to the folder's pixels,
its pool order (and so every protocol's seeded splits) is the folder's, and its
:meth:`~PackedDataset.fingerprint` is the folder's content digest: features cached from
the folder serve the pack and the other way round. Sources that are not one file per image
(the official CIFAR-10 and MNIST releases) are encoded losslessly as PNG (grayscale where
the three channels agree), named ``<part>/<class>/<pool index>.png``: same pixels, but a
digest of their own (their cached features are not shared with the release's).
"""

from __future__ import annotations

import io
import json
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from deephash.data.dataset import ImageDataset
from deephash.data.decode import REPLACE, decode_pixels, decode_rgb
from deephash.data.fingerprint import entries_digest, remembered_digest
from deephash.data.headers import header_problem
from deephash.data.pack_labels import FORMATS, label_fields, read_labels
from deephash.errors import DataError
from deephash.fileio import atomic_write

MAGIC = b"\x89deephash-pack\r\n\x1a\n"
#: the newest format this deephash writes and reads (it writes format 1 where it can)
VERSION = FORMATS[-1]
_LENGTHS = struct.Struct("<IQ")  # format version, header length
PREFIX = len(MAGIC) + _LENGTHS.size
#: images decoded once into memory when every one has at most this side ...
SMALL_SIDE = 64
#: ... and all their pixels together take at most this many bytes (CIFAR-10: 176 MiB)
MEMORY_BOUND = 256 << 20


def is_pack(path: Path) -> bool:
    """Whether ``path`` is a file that starts with a pack's magic bytes."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _stored_digest(names: Sequence[str], blobs: Iterable[bytes]) -> str:
    """The folder content digest (:func:`~deephash.data.fingerprint.content_digest`) of
    files ``names`` holding ``blobs``."""
    return entries_digest((name, len(blob), (blob,)) for name, blob in zip(names, blobs,
                                                                             strict=True))


def _source_image(dataset: ImageDataset, index: int) -> tuple[str, bytes]:
    """``(name, encoded bytes)`` of image ``index``: its file (named by its path relative
    to the data set's folder, as ``data_files()`` names it), or a PNG of its pixels."""
    if isinstance(dataset, PackedDataset):
        return dataset.names[index], dataset.encoded(index)
    source = dataset.image_source(index)
    if isinstance(source, Path):
        name = Path(os.path.relpath(source, dataset.data_files()[0])).as_posix()
        try:
            return name, source.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read image {source}: {exc.strerror}; {REPLACE}") from None
    pixels = dataset.load_pixels(index)
    gray = bool((pixels == pixels[..., :1]).all())
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if gray else pixels).save(buffer, "PNG")
    part = "test" if dataset.is_test[index] else "train"
    labels = dataset.labels[[index]].lists()[0]
    label = dataset.classes[labels[0]] if labels else "unlabelled"
    return f"{part}/{label}/{index:05d}.png", buffer.getvalue()


def _height_width(data: bytes, where: str) -> tuple[int, int]:
    """Image size from the encoded header alone (no decoding); a file PIL cannot read or
    would refuse to decode (a decompression bomb) is a one-line :class:`DataError`."""
    problem = header_problem(data)
    if problem is not None:
        raise DataError(f"cannot read image {where}: {problem}; {REPLACE}")
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return height, width


def write_pack(dataset: ImageDataset, path: Path,
               on_image: Callable[[], object] | None = None) -> int:
    """Write ``dataset`` into the pack file ``path`` (atomically: a temporary file beside
    it, renamed into place) and return its size in bytes; ``on_image()`` is called after
    each image is read. The encoded images are held in memory while writing (a pack is
    meant for data sets of tens of MB). The same data set always gives the same bytes."""
    names: list[str] = []
    blobs: list[bytes] = []
    shapes: list[tuple[int, int]] = []
    for index in range(len(dataset)):
        name, data = _source_image(dataset, index)
        names.append(name)
        blobs.append(data)
        shapes.append(_height_width(data, dataset.describe(index)))
        if on_image is not None:
            on_image()
    source = dataset.source_name if isinstance(dataset, PackedDataset) else dataset.name
    version, labels = label_fields(dataset)
    header = {"name": source, "classes": list(dataset.classes), "names": names, **labels,
              "is_test": [int(test) for test in dataset.is_test],
              "sizes": [len(blob) for blob in blobs],
              "heights": [h for h, _w in shapes], "widths": [w for _h, w in shapes],
              "fingerprint": _stored_digest(names, blobs)}
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")

    def write(handle: IO[bytes]) -> None:
        handle.write(MAGIC + _LENGTHS.pack(version, len(encoded)) + encoded)
        for blob in blobs:
            handle.write(blob)

    atomic_write(Path(path), write)
    return PREFIX + len(encoded) + sum(len(blob) for blob in blobs)


def _damaged(path: Path, problem: str) -> DataError:
    return DataError(f"pack {path} {problem}; re-run deephash pack DATA_DIR {path}")


def read_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """The JSON header of the pack ``path``, its format version and where its data start;
    raises :class:`DataError` for a foreign, newer, truncated or damaged file."""
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(PREFIX)
            if not prefix:
                raise _damaged(path, "is empty")
            if prefix[:len(MAGIC)] != MAGIC:
                raise DataError(f"{path} is not a deephash pack (it does not start with the "
                                f"pack magic bytes); write one with deephash pack DATA_DIR "
                                f"{path}")
            if len(prefix) < PREFIX:
                raise _damaged(path, "is truncated (it ends inside its header)")
            version, length = _LENGTHS.unpack(prefix[len(MAGIC):])
            if version not in FORMATS:
                raise DataError(f"pack {path} has format version {version}; this deephash "
                                f"reads versions {FORMATS[0]} to {VERSION}: use the deephash "
                                f"that wrote it (or a newer one), or re-run deephash pack "
                                f"DATA_DIR {path}")
            raw = handle.read(min(length, os.fstat(handle.fileno()).st_size))
    except OSError as exc:
        raise DataError(f"cannot read pack {path}: {exc.strerror}") from None
    if len(raw) < length:
        raise _damaged(path, "is truncated (it ends inside its header)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _damaged(path, "has a damaged header (not JSON)") from None
    except RecursionError:  # a crafted header of deeply nested lists
        raise _damaged(path, "has a damaged header (JSON nested too deeply)") from None
    if not isinstance(header, dict):
        raise _damaged(path, "has a damaged header (not a mapping)")
    return header, version, PREFIX + length


class PackedDataset(ImageDataset):
    """The images of a pack file (see the module's docstring), in the packed pool order.

    Small images (every side at most :data:`SMALL_SIDE`, all pixels at most
    :data:`MEMORY_BOUND` bytes: CIFAR-10's 60,000 take 176 MiB) are decoded once, on first
    use, into one flat ``uint8`` array and served from it; larger ones are decoded per
    call from the memory-mapped file. Worker processes: pickling carries the path and the
    header's arrays, never the mapped bytes or decoded pixels (a spawned worker maps the
    file again, so the OS shares its pages, and decodes the images it is asked for). A
    forked worker shares the parent's decoded array copy-on-write when the parent built it
    before forking; only the process that opened the pack builds it, so workers never each
    decode the whole pack for the share they serve.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        header, version, start = read_header(self.path)
        try:
            self.source_name = str(header["name"])
            self.classes = [str(c) for c in header["classes"]]
            self.names = list(header["names"])
            self.is_test = np.asarray(header["is_test"], dtype=np.int64).astype(bool)
            sizes = np.asarray(header["sizes"], dtype=np.int64)
            self.shapes = np.stack([np.asarray(header["heights"], dtype=np.int64),
                                    np.asarray(header["widths"], dtype=np.int64)], axis=-1)
            self._stored = str(header["fingerprint"])
            self.labels, self.parts = read_labels(header, version, len(self.names),
                                                  len(self.classes))
        except (KeyError, TypeError, ValueError) as exc:
            raise _damaged(self.path, f"has a damaged header ({exc!r})") from None
        n = len(self.names)
        if not (all(isinstance(name, str) for name in self.names)
                and self.is_test.shape == sizes.shape == (n,)
                and self.shapes.shape == (n, 2) and (sizes >= 0).all()
                and (self.shapes > 0).all()):
            raise _damaged(self.path, "has a damaged header (inconsistent image lists)")
        self.offsets = start + np.concatenate([[0], np.cumsum(sizes)])
        self._stat = self._file_stat()
        if self._stat[0] != self.offsets[-1]:
            raise _damaged(self.path, f"is {self._stat[0]} bytes, its header says "
                                      f"{self.offsets[-1]} (truncated or damaged)")
        self.name = f"{self.path.name} (pack of {self.source_name})"
        pixels = self.shapes[:, 0] * self.shapes[:, 1] * 3
        self._pixel_offsets = np.concatenate([[0], np.cumsum(pixels)])
        self._small = bool((self.shapes <= SMALL_SIDE).all()
                           and self._pixel_offsets[-1] <= MEMORY_BOUND)
        self._owner = os.getpid()
        self._reset()
        self.check()

    def _reset(self) -> None:
        self._map: mmap.mmap | None = None
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_map", "_pixels", "_lock"):
            del state[key]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _file_stat(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise DataError(f"cannot read pack {self.path}: {exc.strerror}") from None
        return stat.st_size, stat.st_mtime_ns

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            if self._file_stat() != self._stat:
                raise DataError(f"pack {self.path} changed after it was opened; run the "
                                "command again")
            with open(self.path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def encoded(self, index: int) -> bytes:
        """The stored file bytes of image ``index`` (JPEG, PNG, ...)."""
        return self._mapped()[self.offsets[index]:self.offsets[index + 1]]

    def _fix(self) -> str:
        return f"re-run deephash pack DATA_DIR {self.path}"

    def preload(self) -> bool:
        """Decode every image into memory now, as the first use would (call it before
        starting forked workers to share the pixels with them); False when the images
        are not small enough, or this process did not open the pack."""
        return self._memory() is not None

    def _memory(self) -> np.ndarray | None:
        """Every image's pixels, flat, when small (decoded on first call); else ``None``."""
        if self._pixels is None and self._small and os.getpid() == self._owner:
            with self._lock:
                if self._pixels is None and self._small:
                    self._pixels = self._decode_all()
        return self._pixels

    def _decode_all(self) -> np.ndarray | None:
        flat = np.empty(int(self._pixel_offsets[-1]), dtype=np.uint8)
        for index in range(len(self)):
            try:
                pixels = decode_pixels(self.encoded(index), self.describe(index), self._fix())
            except DataError:  # per-image decoding names the damaged image when it is asked
                self._small = False
                return None
            if pixels.shape[:2] != tuple(self.shapes[index]):
                raise _damaged(self.path, f"holds {self.names[index]} of {pixels.shape[:2]} "
                                          f"pixels, its header says "
                                          f"{tuple(map(int, self.shapes[index]))}")
            flat[self._pixel_offsets[index]:self._pixel_offsets[index + 1]] = pixels.ravel()
        return flat

    def load_pixels(self, index: int) -> np.ndarray:
        memory = self._memory()
        if memory is None:
            return decode_pixels(self.encoded(index), self.describe(index), self._fix())
        height, width = self.shapes[index]
        start, end = self._pixel_offsets[index], self._pixel_offsets[index + 1]
        return memory[start:end].reshape(height, width, 3).copy()

    def load_image(self, index: int) -> Image.Image:
        if self._memory() is not None:
            return Image.fromarray(self.load_pixels(index))
        return decode_rgb(self.encoded(index), self.describe(index), self._fix())

    def image_source(self, index: int) -> bytes:
        return self.encoded(index)

    def describe(self, index: int) -> str:
        return f"{self.path}:{self.names[index]}"

    def data_files(self) -> tuple[Path, list[str]]:
        return self.path.parent, [self.path.name]

    def fingerprint(self) -> str:
        """The content digest of the folder the pack was made from (same names, sizes and
        bytes), recomputed over the stored bytes (one read of the file, about 0.1 s for
        CIFAR-10), checked against the digest written when packing (a mismatch means the
        file was damaged) and remembered in ``fingerprint_memo`` under the pack file's
        own stat digest, as a folder's is."""
        if self._fingerprint is None:
            self._fingerprint = remembered_digest(self.fingerprint_memo, *self.data_files(),
                                                  self._checked_digest)
        return self._fingerprint

    def _checked_digest(self) -> str:
        digest = _stored_digest(self.names, (self.encoded(i) for i in range(len(self))))
        if digest != self._stored:
            raise _damaged(self.path, "is damaged (its images do not match the digest "
                                      "written when it was packed)")
        return digest
