"""Decoding image files to pixels: the JPEG fast path gives PIL's exact pixels, or hands
the file to PIL; damaged files stop with their name either way."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_CIFAR
from PIL import Image

from deephash.data import decode
from deephash.data.decode import open_rgb, read_rgb_pixels
from deephash.errors import DataError


def _photo(height: int = 37, width: int = 53) -> Image.Image:
    """Smooth gradients plus noise: what JPEG's chroma subsampling and DCT act on."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255)
                           .astype(np.uint8))


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


#: name -> (file bytes, whether the fast path decodes it)
CASES = {
    "420": (_jpeg(_photo(), quality=90), True),
    "444": (_jpeg(_photo(), subsampling=0), True),
    "422": (_jpeg(_photo(), subsampling=1), True),
    "progressive": (_jpeg(_photo(), progressive=True), True),
    "odd size": (_jpeg(_photo(1, 3)), True),
    "grayscale": (_jpeg(_photo().convert("L")), False),
    "cmyk": (_jpeg(_photo().convert("CMYK")), False),
    "png named jpg": (b"", False),  # filled in by the test
}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of the fast decoder that returned pixels."""
    assert decode.simplejpeg is not None, "simplejpeg is a dependency"
    real = decode.simplejpeg.decode_jpeg
    calls: list[int] = []

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        pixels = real(*args, **kwargs)
        calls.append(1)
        return pixels

    monkeypatch.setattr(decode.simplejpeg, "decode_jpeg", counting)
    return calls


@pytest.mark.parametrize("name", CASES)
def test_pixels_are_pils_pixels_and_fast_only_where_exact(
        name: str, tmp_path: Path, counted: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    data, fast = CASES[name]
    path = tmp_path / "image.jpg"
    if name == "png named jpg":
        _photo().save(path, "PNG")
    else:
        path.write_bytes(data)
    expected = np.array(open_rgb(path))
    pixels = read_rgb_pixels(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (*expected.shape[:2], 3)
    assert np.array_equal(pixels, expected)
    assert len(counted) == int(fast)
    monkeypatch.setattr(decode, "simplejpeg", None)  # a machine without it: PIL, same pixels
    assert np.array_equal(read_rgb_pixels(path), expected)


def test_damaged_jpegs_stop_with_their_name_or_decode_as_pil_does(tmp_path: Path) -> None:
    data = CASES["420"][0]
    truncated, header_only = tmp_path / "truncated.jpg", tmp_path / "header.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    header_only.write_bytes(data[:20])
    for path in (truncated, header_only, tmp_path / "missing.jpg"):
        with pytest.raises(DataError, match=rf"cannot read image .*{path.name}"):
            read_rgb_pixels(path)
        with pytest.raises(DataError, match=rf"cannot read image .*{path.name}"):
            open_rgb(path)
    scribbled = tmp_path / "scribbled.jpg"  # junk inside the entropy-coded data: a warning
    scribbled.write_bytes(data[:400] + b"\x00" * 40 + data[440:])
    try:
        expected = np.array(open_rgb(scribbled))
    except DataError:
        with pytest.raises(DataError):
            read_rgb_pixels(scribbled)
    else:
        assert np.array_equal(read_rgb_pixels(scribbled), expected)


@pytest.mark.skipif(not (SHARED_CIFAR / "train").is_dir(), reason="shared CIFAR-10 absent")
def test_cifar10_jpegs_decode_to_pils_pixels(counted: list[int]) -> None:
    from deephash.data import open_dataset

    data = open_dataset(str(SHARED_CIFAR))
    sample = np.linspace(0, len(data) - 1, 500).astype(int)
    for index in sample:
        assert np.array_equal(data.load_pixels(int(index)),
                              np.array(data.load_image(int(index))))
    assert len(counted) == len(sample)  # every one through the fast path
