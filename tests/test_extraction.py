"""Feature extraction on real images, through the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deephash.backbones import Backbone, Preprocessing
from deephash.data import open_dataset
from deephash.errors import DataError
from deephash.features import compute_features, feature_key, transform_spec
from deephash.features.cache import FeatureCache


class MeanColour(torch.nn.Module):
    """A transparent stand-in backbone: per-channel means plus a position-sensitive one."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        left = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
        return torch.cat([x.mean(dim=(2, 3)), left[:, None]], dim=1)


def colour_backbone() -> Backbone:
    return Backbone("colour", MeanColour(), 4, Preprocessing((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                    weights_id="test:colour")


def test_features_match_a_direct_computation(image_folder: Path, tmp_path: Path) -> None:
    data = open_dataset(str(image_folder))
    backbone = colour_backbone()
    spec = transform_spec(backbone, 16)
    features = compute_features(data, backbone, spec, cache_dir=tmp_path / "c", batch_size=5)
    assert features.shape == (len(data), 4) and features.dtype == np.float32
    transform = spec.build()
    for i in (0, 7, len(data) - 1):
        expected = backbone(transform(data.load_image(i))[None])[0].numpy()
        np.testing.assert_allclose(features[i], expected, atol=1e-6)


def test_second_run_reads_the_cache_and_views_differ(image_folder: Path, tmp_path: Path) -> None:
    data = open_dataset(str(image_folder))
    backbone = colour_backbone()
    identity = compute_features(data, backbone, transform_spec(backbone, 16), cache_dir=tmp_path)
    calls = backbone.body.calls
    again = compute_features(data, backbone, transform_spec(backbone, 16), cache_dir=tmp_path)
    assert backbone.body.calls == calls and np.array_equal(again, identity)
    flipped = compute_features(data, backbone, transform_spec(backbone, 16, "hflip"),
                               cache_dir=tmp_path)
    assert backbone.body.calls > calls
    np.testing.assert_allclose(flipped[:, :3], identity[:, :3], atol=1e-5)  # means: invariant
    assert not np.allclose(flipped[:, 3], identity[:, 3])  # the left half is not


def test_corrupt_image_stops_with_its_name_and_keeps_finished_shards(
        image_folder: Path, tmp_path: Path) -> None:
    bad = image_folder / "test" / "class0" / "01.png"  # pool index 25: the fourth shard
    bad.write_bytes(b"\x89PNG broken")
    data = open_dataset(str(image_folder))
    backbone = colour_backbone()
    spec = transform_spec(backbone, 16)
    for workers in (0, 2):
        with pytest.raises(DataError, match=r"cannot read image .*test/class0/01\.png"):
            compute_features(data, backbone, spec, cache_dir=tmp_path, num_workers=workers,
                             batch_size=4, shard_size=8)
    shards = FeatureCache(tmp_path).entry(feature_key(backbone, data, spec)) / "shards"
    assert sorted(p.name for p in shards.iterdir()) == [
        "rows-000000-000008.npy", "rows-000008-000016.npy", "rows-000016-000024.npy"]


def test_non_finite_features_are_refused(image_folder: Path) -> None:
    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 2), float("nan"))

    backbone = Backbone("broken", Broken(), 2, Preprocessing((0.0,) * 3, (1.0,) * 3), None)
    with pytest.raises(DataError, match="NaN"):
        compute_features(open_dataset(str(image_folder)), backbone,
                         transform_spec(backbone, 8), cache_dir=None)


def test_extraction_turns_tf32_off_and_restores_the_setting() -> None:
    import torch

    from deephash.devices import full_float32

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        with full_float32():
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_both_views_come_from_one_decode(image_folder: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from deephash.features import compute_views

    data = open_dataset(str(image_folder))
    decoded: list[int] = []
    load_image, load_pixels = data.load_image, data.load_pixels
    monkeypatch.setattr(data, "load_pixels", lambda i: decoded.append(i) or load_pixels(i))
    backbone = colour_backbone()
    spec = transform_spec(backbone, 16)
    views = compute_views(data, backbone, spec, ("identity", "hflip"), cache_dir=tmp_path,
                          batch_size=5)
    assert sorted(decoded) == list(range(len(data)))  # once per image for both views
    for view in ("identity", "hflip"):  # as the view's own transform makes them
        transform = transform_spec(backbone, 16, view).build()
        for i in (0, 7, len(data) - 1):
            expected = backbone(transform(load_image(i))[None])[0].numpy()
            np.testing.assert_allclose(views[view][i], expected, atol=1e-6)
    assert not np.allclose(views["hflip"][:, 3], views["identity"][:, 3])
    again = compute_features(data, backbone, transform_spec(backbone, 16, "hflip"),
                             cache_dir=tmp_path)
    assert len(decoded) == len(data) and np.array_equal(again, views["hflip"])  # cached


def test_a_batch_view_equals_the_views_transform(image_folder: Path) -> None:
    from deephash.features.extract import PixelImages, apply_view

    data = open_dataset(str(image_folder))
    backbone = colour_backbone()
    spec = transform_spec(backbone, 12)
    pixels = PixelImages(data, np.arange(len(data)), spec)
    batch, indices, errors, augmented = pixels.collate([pixels[i] for i in range(len(data))])
    assert augmented == {}
    assert len({tuple(pixels[i][0].shape) for i in range(len(data))}) > 1  # mixed sizes
    assert batch.dtype == torch.uint8 and batch.shape == (len(data), 3, 12, 12)
    assert indices.tolist() == list(range(len(data))) and errors == [""] * len(data)
    for view in ("identity", "hflip"):  # normalised by the batch = the view's own transform
        transform = transform_spec(backbone, 12, view).build()
        expected = torch.stack([transform(data.load_image(i)) for i in range(len(data))])
        assert torch.equal(spec.normalise(apply_view(batch, view)), expected)
    assert apply_view(batch, "identity") is batch
    with pytest.raises(ValueError, match="unknown view 'vflip'"):
        apply_view(batch, "vflip")


def test_augmented_views_are_seeded_per_image_and_view(image_folder: Path,
                                                       tmp_path: Path) -> None:
    """aug<k> of an image is the same whatever the batch, the order or the subset; views
    differ from each other and from the image; a subset's views are cached under their own
    key and read back."""
    from deephash.data.augment import CROP_RATIO, CROP_SCALE, augment_pixels, crop_box
    from deephash.features import compute_views
    from deephash.features.extract import PixelImages

    data = open_dataset(str(image_folder))
    backbone = colour_backbone()
    spec = transform_spec(backbone, 12)
    every = PixelImages(data, np.arange(len(data)), spec, ("aug1", "aug2"))
    _, _, _, whole = every.collate([every[i] for i in range(len(data))])
    order = np.array([9, 3, 30, 0])
    some = PixelImages(data, order, spec, ("aug2",))
    _, _, _, part = some.collate([some[i] for i in range(len(order))])
    assert torch.equal(part["aug2"], whole["aug2"][order])
    assert not torch.equal(whole["aug1"], whole["aug2"])
    for index in (0, 5, 31):  # boxes inside the image, within the policy's ranges
        h, w = data.load_pixels(index).shape[:2]
        for view in (1, 2, 3):
            top, left, ch, cw, _ = crop_box(h, w, view, index)
            assert 0 <= top <= h - ch and 0 <= left <= w - cw
            if (ch, cw) != (h, w):
                assert CROP_SCALE[0] - 0.1 <= ch * cw / (h * w) <= CROP_SCALE[1] + 1e-9
                assert CROP_RATIO[0] - 0.1 <= cw / ch <= CROP_RATIO[1] + 0.1
    mirrors = [crop_box(20, 16, 1, index)[4] for index in range(200)]
    assert 70 < sum(mirrors) < 130  # a fair coin
    one = augment_pixels(torch.from_numpy(data.load_pixels(4)).permute(2, 0, 1), 2, 4, 12)
    assert torch.equal(one, whole["aug2"][4])

    subset = np.flatnonzero(~data.is_test)[::2]
    first = compute_views(data, backbone, spec, ("aug1", "aug2"), cache_dir=tmp_path,
                          subset=subset)
    calls = backbone.body.calls
    again = compute_views(data, backbone, spec, ("aug1", "aug2"), cache_dir=tmp_path,
                          subset=subset)
    assert backbone.body.calls == calls and first["aug1"].shape == (len(subset), 4)
    assert np.array_equal(again["aug2"], first["aug2"])
    direct = backbone(spec.normalise(whole["aug2"][subset]))
    np.testing.assert_allclose(first["aug2"], direct.detach().numpy(), atol=1e-6)
    other = compute_views(data, backbone, spec, ("aug2",), cache_dir=tmp_path,
                          subset=subset[:3])
    assert backbone.body.calls > calls  # another subset, another entry
    np.testing.assert_allclose(other["aug2"], first["aug2"][:3], atol=1e-6)


@pytest.mark.parametrize("size", [8, 16, 48])
@pytest.mark.parametrize("view", ["identity", "hflip"])
def test_pixels_then_normalisation_is_torchvisions_composed_transform(
        image_folder: Path, size: int, view: str) -> None:
    """The split transform gives bitwise what torchvision's steps give in one Compose, on
    the fixture's images of every shape and mode (so features cached before the split
    stay valid)."""
    from torchvision.transforms import v2

    from deephash.data.transforms import TransformSpec

    spec = TransformSpec(size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), view=view)
    steps = [v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size),
             v2.ToDtype(torch.float32, scale=True),
             v2.Normalize(list(spec.mean), list(spec.std))]
    composed = v2.Compose([*steps, *([v2.RandomHorizontalFlip(p=1.0)] if view == "hflip"
                                     else [])])
    data = open_dataset(str(image_folder))
    pixels = spec.build_pixels()
    for i in range(len(data)):
        expected = composed(data.load_image(i))
        assert torch.equal(spec.build()(data.load_image(i)), expected)
        assert torch.equal(spec.normalise(pixels(data.load_pixels(i))), expected)


def test_decoding_workers_default_to_none_beside_a_cpu_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from deephash.devices import MAX_GPU_WORKERS, decoding_workers
    from deephash.features.extract import PixelImages, make_loader

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert decoding_workers(None, cpu) == 0
    assert decoding_workers(3, cpu) == 3 and decoding_workers(0, cuda) == 0  # as asked
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert decoding_workers(None, cuda) == MAX_GPU_WORKERS
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert decoding_workers(None, cuda) == 1
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert decoding_workers(None, cuda) == 1
    images = PixelImages.__new__(PixelImages)  # the loader only holds it
    assert make_loader(images, 4, None, cpu).num_workers == 0
    assert make_loader(images, 4, 2, cpu).num_workers == 2
