"""timm models as backbones (``--backbone timm:NAME``): features are timm's own pooled
pre-logits, preprocessing is the model's pretrained configuration, weights come from a file
(or random; the download is replaced by a failing stand-in, no network), the feature cache
keeps models apart, partial finetuning splits the families it knows, and ``baseline`` and
``hash`` run end to end. Tiny models only: resnet10t (4 blocks), mobilenetv3_small_050 and
vit_tiny_patch16_224 at small sides."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from conftest import tiny_run_args
from PIL import Image, ImageFilter
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, create_transform, resolve_model_data_config
from torch import nn

from deephash.backbones import Backbone, create_backbone
from deephash.backbones.base import file_digest
from deephash.backbones.split import check_trainable_blocks, count_blocks, split_backbone
from deephash.cli import main
from deephash.errors import ConfigError, WeightsError
from deephash.features import transform_spec

RESNET, MOBILE, VIT = "resnet10t", "mobilenetv3_small_050", "vit_tiny_patch16_224"
#: pooled pre-logits width: ResNet's last stage, MobileNetV3's head conv, ViT's class token
DIMS = {RESNET: 512, MOBILE: 1024, VIT: 192}


def reference_model(name: str) -> nn.Module:
    """timm's own model with its classifier, seeded random weights, eval mode."""
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


def pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


@functools.cache
def random_backbone(name: str) -> Backbone:
    """``timm:<name>`` with random weights, built once for the module (no test changes it)."""
    return create_backbone(f"timm:{name}", "none")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny model's full timm state dict (classifier included), saved once."""
    folder = tmp_path_factory.mktemp("timm-weights")
    paths = {}
    for name in DIMS:
        paths[name] = folder / f"{name}.pth"
        torch.save(reference_model(name).state_dict(), paths[name])
    return paths


@pytest.mark.parametrize("name", [RESNET, MOBILE])
def test_features_are_timms_pooled_pre_logits(name: str, weights: dict[str, Path]) -> None:
    backbone = create_backbone(f"timm:{name}", str(weights[name]))
    assert backbone.name == f"timm:{name}" and backbone.num_features == DIMS[name]
    assert backbone.weights_id == f"file:{file_digest(weights[name])}" and not backbone.training
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = backbone(x)
        assert features.shape == (2, DIMS[name])
        assert torch.allclose(features, pre_logits(reference_model(name), x), atol=1e-5)
        assert not torch.allclose(features, random_backbone(name)(x), atol=1e-3)


def test_a_vit_takes_another_side_as_timms_set_input_size_does(weights: dict[str, Path]) -> None:
    backbone = create_backbone(f"timm:{VIT}", str(weights[VIT]))
    assert backbone.num_features == DIMS[VIT]
    assert not backbone.preprocessing.fixed_size  # built with dynamic_img_size
    reference = reference_model(VIT)
    reference.set_input_size(img_size=(32, 32))  # resamples the position embeddings once
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(backbone(x), pre_logits(reference, x), atol=1e-5)
    assert transform_spec(backbone, 32).image_size == 32
    with pytest.raises(ConfigError, match=r"^timm:vit_tiny_patch16_224 takes sides that are "
                                          r"multiples of its 16 px patches, not --image-size "
                                          r"40; pass --image-size 32 or 48$"):
        transform_spec(backbone, 40)


def test_weights_files_with_or_without_classifier_and_safetensors(weights: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    full = create_backbone(f"timm:{RESNET}", str(weights[RESNET]))
    assert "fc.weight" in torch.load(weights[RESNET])  # the file has timm's classifier
    save_file(full.body.state_dict(), tmp_path / "model.safetensors")  # features only
    other = create_backbone(f"timm:{RESNET}", str(tmp_path / "model.safetensors"))
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(other(x), full(x))
    assert other.weights_id != full.weights_id  # another file, another digest
    torch.save(reference_model(MOBILE).state_dict(), tmp_path / "mobile.pth")
    with pytest.raises(WeightsError, match=r"weights from .*mobile\.pth do not fit ResNet") as bad:
        create_backbone(f"timm:{RESNET}", str(tmp_path / "mobile.pth"))
    assert "\n" not in str(bad.value)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match=r"cannot load weights file .*junk\.safetensors"):
        create_backbone(f"timm:{RESNET}", str(tmp_path / "junk.safetensors"))


def test_preprocessing_comes_from_the_pretrained_configuration() -> None:
    vit = random_backbone(VIT)
    assert vit.preprocessing.mean == vit.preprocessing.std == (0.5, 0.5, 0.5)
    assert (vit.preprocessing.interpolation, vit.preprocessing.native_size) == ("bicubic", 224)
    resnet = random_backbone(RESNET)
    assert resnet.preprocessing.mean == IMAGENET_DEFAULT_MEAN
    assert resnet.preprocessing.native_size == 176  # resnet10t.c3_in1k trains at 176 px
    spec = transform_spec(resnet, 32)  # --image-size: any side for a CNN
    assert (spec.image_size, spec.mean, spec.interpolation) == (32, IMAGENET_DEFAULT_MEAN,
                                                                 "bicubic")


@pytest.mark.parametrize("name", [RESNET, VIT])
def test_the_pipelines_pixels_are_timms_at_a_full_crop(name: str) -> None:
    """deephash's transform at --image-size 32 against timm's own evaluation transform of
    the model's data configuration at 32 px, crop_pct 1 (deephash keeps the centre square):
    the same pixels up to resampling round-off (PIL's bicubic against torchvision's)."""
    backbone = random_backbone(name)
    config = {**resolve_model_data_config(backbone.body), "input_size": (3, 32, 32),
              "crop_pct": 1.0}
    theirs_transform = create_transform(**config)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(2))  # photograph-like: no pixel-scale noise to resample
    ours = transform_spec(backbone, 32).build()(image)
    theirs = theirs_transform(image)
    assert ours.shape == theirs.shape == (3, 32, 32)
    step = 1 / 255 / min(backbone.preprocessing.std)  # one grey level, normalised
    difference = (ours - theirs).abs()
    assert float(difference.max()) <= 3 * step and float(difference.mean()) <= step / 2


def test_a_fixed_size_model_takes_its_own_side_only() -> None:
    mixer = create_backbone("timm:mixer_s32_224", "none")  # no dynamic_img_size in its class
    assert mixer.preprocessing.fixed_size and mixer.num_features == 512
    assert transform_spec(mixer, 224).image_size == 224
    with pytest.raises(ConfigError, match=r"^timm:mixer_s32_224 takes 224 px images only, not "
                                          r"--image-size 128; pass --image-size 224$"):
        transform_spec(mixer, 128)


def test_bad_names_and_offline_downloads_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"timm .* has no model 'resnet10x' \(similar: "):
        create_backbone("timm:resnet10x", "none")
    with pytest.raises(ConfigError, match="resnet10t has no pretrained tag 'nope'; known: c3_in1k"):
        create_backbone("timm:resnet10t.nope", "none")
    with pytest.raises(ConfigError, match=r"unknown backbone 'vit'; known: .*timm:NAME"):
        create_backbone("vit")

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(WeightsError, match=r"pretrained weights of resnet10t \(We couldn't "
                                           r"connect.*offline, pass --weights PATH") as failure:
        create_backbone(f"timm:{RESNET}")
    assert "\n" not in str(failure.value)


@pytest.mark.parametrize("name, blocks", [(RESNET, 4), (MOBILE, 13)])
def test_partial_splits_timm_families(name: str, blocks: int) -> None:
    backbone = random_backbone(name)
    assert count_blocks(backbone) == blocks
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = backbone(x)
        for n in (1, blocks):
            prefix, suffix = split_backbone(backbone, n, 64)
            assert torch.allclose(suffix(prefix(x)), full, atol=1e-5)
    with pytest.raises(ConfigError, match=f"which has {blocks} blocks; use 0 to {blocks}"):
        check_trainable_blocks(backbone, blocks + 1)


def test_a_vit_is_refused_for_partial_training_before_any_work(folder: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]
                                                               ) -> None:
    out = tmp_path / "run"
    assert main(["train", "--backbone", f"timm:{VIT}", "--weights", "none", "--mode", "partial",
                 "--trainable-blocks", "1", "--out", str(out),
                 *tiny_run_args(folder, tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be split into blocks" in err and "\n" not in err
    assert main(["baseline", "--backbone", "timm:no_such_model", "--out", str(out),
                 *tiny_run_args(folder, tmp_path / "cache")[:10]]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no model 'no_such_model'" in err and "\n" not in err
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_hash_runs_end_to_end_on_a_vit_at_32_px(folder: Path, tmp_path: Path) -> None:
    assert main(["hash", "--backbone", f"timm:{VIT}", "--weights", "none", "--bits", "8",
                 "--out", str(tmp_path / "h"), *tiny_run_args(folder, tmp_path / "c", 1)]) == 0
    config = yaml.safe_load((tmp_path / "h" / "bits-8" / "config.yaml").read_text())
    assert config["backbone"] == {"name": f"timm:{VIT}", "weights": "none", "image_size": 32}
    metrics = json.loads((tmp_path / "h" / "bits-8" / "metrics.json").read_text())
    assert metrics["distance"] == "hamming" and 0 <= metrics["map@all"] <= 1


def test_baseline_caches_two_timm_models_apart(folder: Path, tmp_path: Path,
                                               weights: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    for name in (RESNET, MOBILE):
        assert main(["baseline", "--backbone", f"timm:{name}", "--weights", str(weights[name]),
                     "--out", str(tmp_path / name), *tiny_run_args(folder, cache)[:10]]) == 0
        assert 0 <= json.loads((tmp_path / name / "metrics.json").read_text())["map@all"] <= 1
    entries = sorted((cache / "features").glob("*/key.json"))
    keys = {json.loads(path.read_text())["backbone"]: json.loads(path.read_text())
            for path in entries}
    assert len(entries) == 2 and set(keys) == {f"timm:{RESNET}", f"timm:{MOBILE}"}
    for name in (RESNET, MOBILE):
        key = keys[f"timm:{name}"]
        assert (key["weights"], key["dim"]) == (f"file:{file_digest(weights[name])}", DIMS[name])
        assert key["transform"]["mean"] == list(random_backbone(name).preprocessing.mean)
