"""Image files to RGB pixels, with a fast path for JPEG that gives PIL's exact pixels.

PIL spends most of the time of a small JPEG (a 32 x 32 CIFAR-10 file: about 65 us of 85)
in its Python header parsing around libjpeg-turbo; ``simplejpeg`` calls the same library
directly (about 18 us). With the same settings (accurate integer DCT, fancy chroma
upsampling) the two produce identical pixels (tests/test_decode.py, on every fixture image
and a sample of CIFAR-10). The fast path takes only what it decodes exactly as PIL does:
JPEG data in YCbCr that libjpeg reads without a warning. Everything else — other formats,
grayscale or CMYK JPEGs, damaged files, or a machine without simplejpeg — goes through PIL,
which also raises the errors a damaged file deserves.
"""

from __future__ import annotations

import io
import types
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deephash.errors import DataError

_JPEG_MAGIC = b"\xff\xd8\xff"
#: the fix a damaged image file's error names
REPLACE = "replace or delete the file"


def _import_simplejpeg() -> types.ModuleType | None:
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


simplejpeg = _import_simplejpeg()


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (grayscale, palette, 16-bit, alpha) to 8-bit RGB."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """The image file at ``path`` as an RGB PIL image; raises :class:`DataError` naming it."""
    return _pil_rgb(path, path)


def decode_rgb(data: bytes, where: object, fix: str = REPLACE) -> Image.Image:
    """The encoded image ``data`` (a file's bytes) as an RGB PIL image, as :func:`open_rgb`
    reads that file; raises :class:`DataError` naming ``where`` and ``fix``."""
    return _pil_rgb(io.BytesIO(data), where, fix)


#: what PIL raises for a file it cannot read (a decompression bomb: more than twice
#: ``Image.MAX_IMAGE_PIXELS``)
UNREADABLE = (OSError, UnidentifiedImageError, ValueError, SyntaxError,
              Image.DecompressionBombError)


def failure(exc: BaseException) -> str:
    """What PIL's exception says about an image, without the repr of an in-memory file
    (``cannot identify image file <_io.BytesIO object at 0x...>``)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file PIL can identify"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large to decode: {str(exc).rstrip('.')}"
    return str(exc)


def _pil_rgb(source: Path | io.BytesIO, where: object, fix: str = REPLACE) -> Image.Image:
    try:
        with Image.open(source) as image:
            image.load()
            return to_rgb(image)
    except UNREADABLE as exc:
        raise DataError(f"cannot read image {where}: {failure(exc)}; {fix}") from None


def fast_jpeg_rgb(data: bytes) -> np.ndarray | None:
    """``(H, W, 3)`` uint8 pixels of ``data`` when it is a YCbCr JPEG that libjpeg reads
    cleanly, decoded as PIL would; ``None`` otherwise (PIL must decode it)."""
    if simplejpeg is None or not data.startswith(_JPEG_MAGIC):
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        limit = Image.MAX_IMAGE_PIXELS
        if colorspace != "YCbCr" or (limit and height * width > limit):
            return None  # PIL decodes it, or refuses a decompression bomb
        pixels: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False,
                                                    fastupsample=False, strict=True)
    except ValueError:  # damaged data, or a warning that strict mode turns into an error
        return None
    return pixels


def read_rgb_pixels(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 pixels of the image file at ``path``, exactly
    ``np.array(open_rgb(path))``; raises :class:`DataError` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror}; {REPLACE}") from None
    return decode_pixels(data, path)


def decode_pixels(data: bytes, where: object, fix: str = REPLACE) -> np.ndarray:
    """``(H, W, 3)`` uint8 pixels of the encoded image ``data``, exactly
    ``np.array(decode_rgb(data, ...))`` (the JPEG fast path where it applies); raises
    :class:`DataError` naming ``where`` and ``fix``."""
    pixels = fast_jpeg_rgb(data)
    return pixels if pixels is not None else np.array(decode_rgb(data, where, fix))
