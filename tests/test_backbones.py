from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from deephash.backbones import BACKBONES, RANDOM, create_backbone
from deephash.backbones.efficientnet_lite import lukemelas_to_timm, packaged_weights_path
from deephash.errors import ConfigError, WeightsError

EXPECTED_FEATURES = {"efficientnet_lite0": 1280, "resnet18": 512, "resnet34": 512,
                     "resnet50": 2048, "vgg16": 4096, "vgg19": 4096}
#: the named backbones; ``timm:<NAME>`` stands for any timm model (tests/test_timm_backbones.py)
BUILT_IN = [name for name in BACKBONES.names() if "<" not in name]


def test_registry_holds_the_documented_backbones() -> None:
    assert sorted(EXPECTED_FEATURES) == BUILT_IN
    assert BACKBONES.names() == sorted([*EXPECTED_FEATURES, "timm:<NAME>"])


@pytest.mark.parametrize("name", BUILT_IN)
def test_contract_feature_shapes(name: str) -> None:
    backbone = create_backbone(name, RANDOM)
    assert backbone.num_features == EXPECTED_FEATURES[name]
    assert backbone.weights_id is None  # random weights are never cached
    pre = backbone.preprocessing
    assert len(pre.mean) == 3 and len(pre.std) == 3 and pre.native_size == 224
    assert not backbone.training
    with torch.inference_mode():
        out = backbone(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, backbone.num_features)


def test_unknown_backbone_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'resnet9'; known: efficientnet_lite0"):
        create_backbone("resnet9")


def test_offline_torchvision_weights_say_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import ResNet18_Weights

    def offline(self: object, **kwargs: object) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(type(ResNet18_Weights.DEFAULT), "get_state_dict", offline)
    with pytest.raises(WeightsError, match=r"--weights PATH.*resnet18-f37072fd\.pth"):
        create_backbone("resnet18")


def test_local_weights_file(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    reference = resnet18(weights=None).eval()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "r18.pth")
    backbone = create_backbone("resnet18", str(tmp_path / "r18.pth"))
    assert backbone.weights_id is not None and backbone.weights_id.startswith("file:")
    x = torch.randn(2, 3, 64, 64)
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        assert torch.allclose(backbone(x), reference(x), atol=1e-5)


def test_bad_weights_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("resnet18", str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot load weights file") as junk:
        create_backbone("resnet18", str(tmp_path / "junk.pth"))
    assert "\n" not in str(junk.value)  # one line, not torch's page of advice

    class Evil:  # a pickle that would run code on load
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    torch.save({"conv1.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="imports print, and loading it could run code") as evil:
        create_backbone("resnet18", str(tmp_path / "evil.pth"))
    assert "\n" not in str(evil.value)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="do not fit"):
        create_backbone("resnet34", str(tmp_path / "wrong.pth"))


def test_lite0_key_mapping_is_a_bijection() -> None:
    import timm

    state = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = lukemelas_to_timm(state, [len(stage) for stage in model.blocks])
    target = model.state_dict()
    assert set(mapped) == set(target) and len(mapped) == len(state)
    assert all(mapped[k].shape == target[k].shape for k in target)


def test_lite0_matches_the_reference_implementation() -> None:
    """Same features as the package the weights were converted for (a test-only oracle)."""
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    path = str(packaged_weights_path())
    reference = reference_pkg.EfficientNet.from_pretrained("efficientnet-lite0",
                                                           weights_path=path).eval()
    ours = create_backbone("efficientnet_lite0")
    assert ours.weights_id is not None
    x = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = reference.extract_features(x).mean(dim=(2, 3))
        assert torch.allclose(ours(x), expected, atol=1e-4)
