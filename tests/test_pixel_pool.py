"""Finetune inputs from a decoded pixel pool: batched crops and mirrors on the device,
evaluation identical to the extraction transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from PIL import Image
from torchvision.transforms.v2 import functional as F

from deephash.data import open_dataset
from deephash.data.augment import CROP_RATIO, CROP_SCALE
from deephash.data.transforms import TransformSpec
from deephash.training.inputs import ImageInputs
from deephash.training.pixel_pool import PixelPoolInputs, augment_batch, crop_grids
from tests.conftest import make_image_folder

SPEC = TransformSpec(image_size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def uniform_folder(root: Path, size: tuple[int, int] = (20, 16)) -> Path:
    """The shared tiny folder with every image (also the odd-sized ones) at ``size``."""
    make_image_folder(root)
    for path in root.rglob("*.png"):
        with Image.open(path) as image:
            resized = image.convert("RGB").resize(size)
        resized.save(path)
    return root


def test_crops_follow_the_augmentation_policy() -> None:
    theta = crop_grids(20000, torch.Generator().manual_seed(0), flip=True)
    width, height = theta[:, 0, 0].abs(), theta[:, 1, 1]
    area, ratio = width * height, width / height
    assert area.max() <= 1 + 1e-6 and area.min() >= CROP_SCALE[0] * CROP_RATIO[0] - 1e-6
    assert (area >= CROP_SCALE[0] - 1e-6).float().mean() > 0.9  # clamping rarely bites
    inside = ratio[(width < 1) & (height < 1)]
    assert inside.min() >= CROP_RATIO[0] - 1e-5 and inside.max() <= CROP_RATIO[1] + 1e-5
    assert ((theta[:, 0, 2].abs() + width) <= 1 + 1e-6).all()  # the crop stays in the image
    assert ((theta[:, 1, 2].abs() + height) <= 1 + 1e-6).all()
    assert (theta[:, 0, 0] < 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert (crop_grids(500, torch.Generator().manual_seed(0), flip=False)[:, 0, 0] > 0).all()
    again = crop_grids(20000, torch.Generator().manual_seed(0), flip=True)
    assert torch.equal(theta, again)  # seeded


def test_a_crop_is_the_resized_box_and_a_mirror_is_mirrored() -> None:
    """Identity: the bilinear resize of the image; the left half: the resize of the left
    half (but at its cut edge); a negative x scale: the mirror image."""
    pixels = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    identity = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    resized = nnf.interpolate(pixels.float() / 255, size=(32, 32), mode="bilinear",
                              align_corners=False)
    torch.testing.assert_close(augment_batch(pixels, identity, 32), resized)
    left = torch.tensor([[[0.5, 0, -0.5], [0, 1, 0]]])
    expected = nnf.interpolate(pixels[..., :8].float() / 255, size=(32, 32), mode="bilinear",
                               align_corners=False)
    # the last output columns sample across the box's edge (the image goes on there) where
    # a crop-then-resize repeats the edge pixel
    torch.testing.assert_close(augment_batch(pixels, left, 32)[..., :30], expected[..., :30])
    mirror = torch.tensor([[[-1.0, 0, 0], [0, 1, 0]]])
    torch.testing.assert_close(augment_batch(pixels, mirror, 32), resized.flip(-1))
    # and the upsampling is torchvision's own resize up to uint8 rounding
    torchvision = F.resize_image(pixels, [32], antialias=True).float() / 255
    assert (augment_batch(pixels, identity, 32) - torchvision).abs().max() <= 1 / 255 + 1e-6


def test_pool_evaluation_is_the_extraction_transform_and_training_is_seeded(
        tmp_path: Path) -> None:
    dataset = open_dataset(uniform_folder(tmp_path / "data"))
    pool = PixelPoolInputs.load(dataset, SPEC, True, 0, 1280, torch.device("cpu"))
    assert pool is not None and tuple(pool.pool.shape) == (len(dataset), 3, 16, 20)
    per_batch = ImageInputs(dataset, SPEC, True, 0, 1280)
    indices = np.array([0, 5, 7, 30])
    for mirrored in (False, True):
        for ours, theirs in zip(pool.eval_batches(indices, 3, mirrored),
                                per_batch.eval_batches(indices, 3, mirrored), strict=True):
            torch.testing.assert_close(ours, theirs)
    batches = [np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])]
    first = list(pool.train_batches(batches))
    assert first[0].shape == (4, 3, 32, 32)
    again = PixelPoolInputs.load(dataset, SPEC, True, 0, 1280, torch.device("cpu"))
    assert again is not None
    for a, b in zip(first, again.train_batches(batches), strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(first[0], next(iter(pool.eval_batches(batches[0], 4))))


def test_mixed_or_large_images_are_decoded_per_batch_instead(tmp_path: Path) -> None:
    mixed = open_dataset(make_image_folder(tmp_path / "mixed"))  # some odd sizes
    assert PixelPoolInputs.load(mixed, SPEC, True, 0, 8, torch.device("cpu")) is None
    large = open_dataset(uniform_folder(tmp_path / "large", size=(40, 40)))
    assert PixelPoolInputs.load(large, SPEC, True, 0, 8, torch.device("cpu")) is None


def test_finetune_trains_from_the_pool(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """deephash train --mode finetune on images of one small size: from the pool, and a
    resumed run continues its crops' generator."""
    from deephash.cli import main

    data = uniform_folder(tmp_path / "data")
    args = ["train", "--data-dir", str(data), "--cache-dir", str(tmp_path / "c"),
            "--image-size", "32", "--tsne-points", "0", "--batch-classes", "3",
            "--batch-samples", "4", "--hidden-dims", "16", "--mode", "finetune",
            "--out", str(tmp_path / "run")]
    with caplog.at_level("INFO"):
        assert main([*args, "--epochs", "1"]) == 0
    assert "decoded into cpu memory" in caplog.text
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and "inputs" in state["generators"]
