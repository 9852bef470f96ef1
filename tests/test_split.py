"""Splitting a backbone for partial finetuning: for every registered backbone the suffix of
the prefix computes the backbone's features, the prefix is a flat-feature backbone that the
feature cache and OpenVINO take, the suffix trains copies of exactly the last N blocks, and
neither the split nor training the suffix changes the original."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from deephash.backbones import BACKBONES, Backbone, Preprocessing, create_backbone
from deephash.backbones.split import count_blocks, split_backbone
from deephash.errors import ConfigError
from deephash.runtimes import build_runtime, relative_difference

#: what the module docstring's table promises
EXPECTED_BLOCKS = {"efficientnet_lite0": 17, "resnet18": 8, "resnet34": 16, "resnet50": 16,
                   "vgg16": 15, "vgg19": 18}


@functools.cache
def make_backbone(name: str) -> Backbone:
    """Lite0 with its packaged ImageNet weights (offline); the others seeded, random."""
    if name == "efficientnet_lite0":
        return create_backbone(name)
    torch.manual_seed(0)
    return create_backbone(name, "none")


def images(size: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(size))


def last_blocks(backbone: Backbone, n: int) -> list[nn.Module]:
    """The original's last ``n`` blocks, enumerated here independently of split.py: the
    modules whose parameters the suffix must train."""
    body = backbone.body
    if backbone.name.startswith("efficientnet"):
        blocks = [block for stage in body.blocks for block in stage]
        blocks.append(nn.ModuleList([body.conv_head, body.bn2]))
    elif backbone.name.startswith("resnet"):
        blocks = [block for layer in (body.layer1, body.layer2, body.layer3, body.layer4)
                  for block in layer]
    else:  # VGG: each conv layer (ReLU and max-pool have no weights), fc6, fc7
        blocks = [m for m in body.features if isinstance(m, nn.Conv2d)]
        blocks += [body.classifier[0], body.classifier[3]]
    return blocks[len(blocks) - n:] if n else []


def sweep(name: str, training: bool = False) -> list[int]:
    """N = 0, 1, 2 and all blocks; fewer where another backbone of the family has the same
    kinds of blocks (resnet34 resnet18's, vgg19 vgg16's). Copying and training VGG's fc6
    (100 M parameters) is slow: VGG's training test takes N = 0, 1 and all (vgg16), 1 (vgg19)."""
    total = EXPECTED_BLOCKS[name]
    if name == "vgg19":
        return [1] if training else [total]
    if training and name == "vgg16":
        return [0, 1, total]
    return [1, total] if name == "resnet34" else [0, 1, 2, total]


def sides(name: str) -> tuple[int, ...]:
    """Two input sides; one for VGG, whose deep copies of fc6 dominate the test's time."""
    return (32,) if name.startswith("vgg") else (32, 64)


@functools.cache
def full_features(name: str, side: int) -> torch.Tensor:
    with torch.no_grad():
        return make_backbone(name)(images(side))


@pytest.fixture(scope="module", autouse=True)
def _release_backbones() -> Iterator[None]:
    """The cached backbones (VGG's are 0.5 GB each) live as long as this module's tests."""
    yield
    full_features.cache_clear()
    make_backbone.cache_clear()


#: the named backbones (timm's families: tests/test_timm_backbones.py)
BUILT_IN = [name for name in BACKBONES.names() if "<" not in name]
CASES = [(name, n) for name in BUILT_IN for n in sweep(name)]
TRAINING_CASES = [(name, n) for name in BUILT_IN for n in sweep(name, training=True)]


def test_every_registered_backbone_has_its_documented_block_count() -> None:
    assert {name: count_blocks(make_backbone(name)) for name in BUILT_IN} == EXPECTED_BLOCKS


@pytest.mark.parametrize(("name", "n"), CASES)
def test_suffix_of_prefix_is_the_backbone(name: str, n: int) -> None:
    backbone = make_backbone(name)
    for side in sides(name):
        prefix, suffix = split_backbone(backbone, n, side)
        x = images(side)
        reference = full_features(name, side)
        with torch.no_grad():
            activations = prefix(x)
            kept = activations.clone()
            features = suffix(activations)
        assert activations.shape == (len(x), prefix.num_features)  # flat, as declared
        assert torch.equal(activations, kept)  # the suffix never writes into the cache's rows
        assert features.shape == reference.shape == (len(x), suffix.num_features)
        assert relative_difference(features.numpy(), reference.numpy()) <= 1e-5
        assert prefix.weights_id == suffix.weights_id == backbone.weights_id
        assert prefix.preprocessing == suffix.preprocessing == backbone.preprocessing
        assert not prefix.training and not suffix.training  # the backbone's eval mode
    if n == 0:  # the frozen head: same features, same cache key
        assert prefix is backbone and suffix.num_features == backbone.num_features
    else:
        assert (prefix.name, suffix.name) == (f"{name}[:-{n}]", f"{name}[-{n}:]")


def test_prefix_names_and_sizes_key_the_cache_per_split() -> None:
    backbone = make_backbone("efficientnet_lite0")
    splits = {n: split_backbone(backbone, n, 64)[0] for n in (0, 1, 2, 6)}
    assert len({prefix.name for prefix in splits.values()}) == 4
    assert splits[0].name == "efficientnet_lite0"
    # activations before the head conv (320 x 2 x 2), the last stage (192 x 2 x 2) ...
    assert [splits[n].num_features for n in (1, 2, 6)] == [320 * 4, 192 * 4, 112 * 16]
    assert split_backbone(backbone, 2, 128)[0].num_features == 192 * 16  # ... per side


@pytest.mark.parametrize(("name", "n"), TRAINING_CASES)
def test_suffix_trains_copies_of_exactly_the_last_blocks(name: str, n: int) -> None:
    backbone = make_backbone(name)
    x = images(32)
    prefix, suffix = split_backbone(backbone, n, 32)
    expected = [p for block in last_blocks(backbone, n) for p in block.parameters()]
    trainable = [p for p in suffix.parameters() if p.requires_grad]
    assert len(trainable) == len(list(suffix.parameters())) == len(expected)
    assert sum(p.numel() for p in trainable) == sum(p.numel() for p in expected)
    assert all(torch.equal(a, b) for a, b in zip(trainable, expected, strict=True))
    originals = {id(p) for p in backbone.parameters()}
    assert not any(id(p) in originals for p in trainable)  # copies, not the original's
    if n == 0:
        return
    with torch.no_grad():
        activations = prefix(x)
    features = suffix(activations)
    assert features.requires_grad
    features.square().sum().backward()
    assert all(p.grad is not None for p in trainable)
    assert any(float(p.grad.abs().max()) > 0 for p in trainable if p.grad is not None)
    assert all(p.grad is None for p in backbone.parameters())  # prefix and original: none
    torch.optim.SGD(trainable, lr=0.1).step()
    with torch.no_grad():
        assert not torch.equal(suffix(activations), features)  # the step did train
        assert torch.equal(backbone(x), full_features(name, 32))
        assert torch.equal(prefix(x), activations)


def test_a_split_leaves_the_originals_modes_and_statistics_alone() -> None:
    torch.manual_seed(0)
    backbone = create_backbone("resnet18", "none").train()  # BatchNorm would update here
    backbone.body.layer1.eval()  # mixed modes survive too
    modes = [m.training for m in backbone.modules()]
    state = {k: v.clone() for k, v in backbone.state_dict().items()}
    prefix, suffix = split_backbone(backbone, 2, 32)
    assert [m.training for m in backbone.modules()] == modes
    assert all(torch.equal(state[k], v) for k, v in backbone.state_dict().items())
    assert prefix.body[0] is backbone.body.conv1  # the prefix shares, without copies
    assert prefix.training and suffix.training
    assert suffix.body.blocks[0].bn1.weight is not backbone.body.layer4[0].bn1.weight


def test_a_trained_suffix_loads_into_the_split_of_a_fresh_backbone() -> None:
    """What loading a partial-mode checkpoint does: the state-dict keys depend only on the
    backbone and N."""
    torch.manual_seed(1)
    trained = split_backbone(create_backbone("resnet18", "none"), 2, 32)[1]
    torch.manual_seed(2)
    fresh = split_backbone(create_backbone("resnet18", "none"), 2, 32)[1]
    activations = torch.randn(3, 256 * 2 * 2)  # layer3's output at 32 px
    with torch.no_grad():
        assert not torch.equal(fresh(activations), trained(activations))
        fresh.load_state_dict(trained.state_dict())
        assert torch.equal(fresh(activations), trained(activations))


@pytest.mark.parametrize("n", [2, 17])
def test_openvino_exports_the_prefix(n: int, tmp_path: Path) -> None:
    prefix = split_backbone(make_backbone("efficientnet_lite0"), n, 32)[0]
    pixels = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(n))
    reference = build_runtime("torch", prefix, 32)(pixels)
    exported = build_runtime("openvino", prefix, 32, cache_dir=tmp_path)
    activations = exported(pixels)
    assert activations.shape == reference.shape == (5, prefix.num_features)
    assert float(abs(reference).max()) > 0
    assert relative_difference(activations, reference) <= 1e-5
    assert len(list((tmp_path / "runtimes").iterdir())) == 1  # cached under its own key


@pytest.mark.parametrize("n", [-1, 18])
def test_trainable_blocks_out_of_range_name_the_allowed_range(n: int) -> None:
    with pytest.raises(ConfigError, match=f"--trainable-blocks {n} is out of range for "
                                          "efficientnet_lite0.*use 0 to 17") as failure:
        split_backbone(make_backbone("efficientnet_lite0"), n, 32)
    assert "\n" not in str(failure.value)


def test_unsplittable_backbones_and_sizes_are_one_line_config_errors() -> None:
    other = Backbone("tiny", nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(1)), 4,
                     Preprocessing((0.5,) * 3, (0.5,) * 3), None)
    with pytest.raises(ConfigError, match=r"tiny \(Sequential\) cannot be split into blocks"):
        count_blocks(other)
    with pytest.raises(ConfigError, match=r"vgg16 cannot take 16 px images.*larger "
                                          r"--image-size") as failure:
        split_backbone(make_backbone("vgg16"), 2, 16)
    assert "\n" not in str(failure.value)
