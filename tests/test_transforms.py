import numpy as np
import torch
from PIL import Image

from deephash.data.transforms import TransformSpec


def spec(view: str = "identity", size: int = 24) -> TransformSpec:
    return TransformSpec(image_size=size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                         view=view)


def test_shape_range_and_normalisation() -> None:
    white = Image.new("RGB", (40, 30), (255, 255, 255))
    out = spec().build()(white)
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, (1.0 - 0.5) / 0.25))


def test_hflip_view_is_the_mirror_image() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert torch.allclose(spec("hflip").build()(image), spec().build()(mirrored), atol=1e-5)
    assert not torch.allclose(spec("hflip").build()(image), spec().build()(image))


def test_non_square_images_are_centre_cropped() -> None:
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, 10:20] = 255  # white centre third
    out = spec(size=10).build()(Image.fromarray(wide))
    assert out.min() > 1.9  # only the white centre survives the crop
