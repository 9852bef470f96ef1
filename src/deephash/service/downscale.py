"""Decode a query image no larger than the model needs.

The model sees a ``image_size`` square (the shorter side resized to it, antialiased), so a
6000 x 6000 upload need not become 108 MB of pixels. An image whose shorter side is at
least ``2 * DETAIL * image_size`` is divided by a power of two (2, 4 or 8) that keeps the
shorter side at least ``DETAIL * image_size``: a JPEG in the decoder (libjpeg's scaled DCT,
PIL's ``draft``: the full-size pixels never exist), any other format right after decoding
(PIL's ``reduce``, a box average). Smaller images — every CIFAR-size or ordinary photo up to
``2 * DETAIL * image_size`` on its shorter side — are decoded exactly as
:func:`deephash.data.decode.decode_rgb` decodes them. ``deephash search`` and the service
both decode queries here, so they give the same results for every image.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from deephash.data.decode import REPLACE, decode_rgb, to_rgb
from deephash.errors import DataError

#: the shorter side kept is at least this many times the model's input side
DETAIL = 4
#: formats PIL decodes at a reduced scale (``draft``)
SCALED_IN_DECODER = frozenset({"JPEG", "MPO"})


def reduction(width: int, height: int, image_size: int) -> int:
    """The factor (1, 2, 4 or 8) both sides of a ``width x height`` image are divided by."""
    factor = 1
    while factor < 8 and min(width, height) // (2 * factor) >= DETAIL * image_size:
        factor *= 2
    return factor


def decoded_pixels(width: int, height: int, kind: str, image_size: int) -> int:
    """The most pixels decoding a ``width x height`` image of PIL format ``kind`` holds at
    once (a JPEG is decoded at its reduced size; other formats in full, then reduced)."""
    factor = reduction(width, height, image_size) if kind in SCALED_IN_DECODER else 1
    return -(-width // factor) * -(-height // factor)


def decode_query(data: bytes, where: object, image_size: int, fix: str = REPLACE) -> Image.Image:
    """The RGB image of the encoded ``data``, reduced as the module docstring says; raises
    :class:`DataError` naming ``where`` and ``fix``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            factor = reduction(image.width, image.height, image_size)
            if factor == 1:
                return decode_rgb(data, where, fix)  # exactly the full decode
            if image.format in SCALED_IN_DECODER:
                image.draft(image.mode, (image.width // factor, image.height // factor))
                image.load()
                return to_rgb(image)
            image.load()
            rgb = image if image.mode == "RGB" else to_rgb(image)  # no full-size copy
        return rgb.reduce(factor)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {where}: {exc}; {fix}") from None
