"""Untrusted image bytes to RGB pixels, within limits, or an :class:`ApiError` (4xx).

Checks run cheapest first: an empty upload, too many bytes (413), data PIL does not
recognise as an image (400), too many pixels (413, read from the header before anything
is decoded: a decompression bomb never allocates its pixels), too many pixels in all the
images of a request (413), then the decode itself, where a truncated or damaged file fails
(400). The pixels come from :func:`deephash.service.downscale.decode_query`, the decoder
``deephash search`` reads a query file with, so the service and the command see the same
pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from deephash.errors import DataError
from deephash.service.downscale import decode_query
from deephash.service.errors import ApiError

#: the file extension an added image is kept under, by PIL format (others: lower-case name)
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "TIFF": "tif"}
FIX = "upload a PNG or JPEG image file"


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_pixels: int
    max_request_pixels: int


@dataclass(frozen=True)
class Upload:
    """An uploaded file whose header passed the checks: its bytes, size and PIL format."""

    name: str
    data: bytes
    width: int
    height: int
    kind: str

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def extension(self) -> str:
        """The file extension the image is kept under when added."""
        return EXTENSIONS.get(self.kind, self.kind.lower())


def inspect_upload(data: bytes, name: str, limits: UploadLimits) -> Upload:
    """The checks of an uploaded file called ``name`` that need no decoding."""
    if not data:
        raise ApiError(400, f"upload {name!r} is empty; {FIX}")
    if len(data) > limits.max_bytes:
        raise ApiError(413, f"upload {name!r} has {len(data):,} bytes, more than this server's "
                            f"limit of {limits.max_bytes:,} (--max-upload-bytes); send a "
                            "smaller image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(io.BytesIO(data)) as image:
                width, height, kind = image.width, image.height, image.format or "image"
    except Image.DecompressionBombError:
        width, height, kind = -1, -1, "image"
    except Exception:  # PIL raises many kinds on hostile data; none may become a 500
        raise ApiError(400, f"upload {name!r} is not an image PIL can read; {FIX}") from None
    if width < 0 or width * height > limits.max_pixels:
        size = "over PIL's own limit" if width < 0 else f"{width} x {height} pixels"
        raise ApiError(413, f"upload {name!r} is {size}, more than this server's limit of "
                            f"{limits.max_pixels:,} pixels (--max-pixels); send a smaller image")
    return Upload(name, data, width, height, kind)


def check_request_pixels(uploads: list[Upload], limits: UploadLimits) -> None:
    """Refuse a request whose images hold more pixels in all than the limit (413)."""
    total = sum(upload.pixels for upload in uploads)
    if total > limits.max_request_pixels:
        raise ApiError(413, f"the {len(uploads)} images of this request hold {total:,} pixels, "
                            f"more than this server's limit of {limits.max_request_pixels:,} "
                            "per request (--max-request-pixels); send fewer or smaller images")


def decode_inspected(upload: Upload, image_size: int) -> Image.Image:
    """The RGB pixels of an inspected upload, decoded no larger than a model with
    ``image_size`` inputs needs (:mod:`deephash.service.downscale`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return decode_query(upload.data, repr(upload.name), image_size, FIX)
    except DataError as exc:
        raise ApiError(400, str(exc)) from None
    except Exception as exc:
        raise ApiError(400, f"upload {upload.name!r} cannot be decoded "
                            f"({type(exc).__name__}); {FIX}") from None
