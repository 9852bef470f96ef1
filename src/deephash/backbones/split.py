"""Split a backbone before its last N blocks, for partial finetuning from cached activations.

``split_backbone(backbone, N, image_size)`` returns two :class:`Backbone` objects:

- the **prefix**, ``(B, 3, H, W)`` normalised images -> ``(B, C*h*w)`` float32 activations
  before the last N blocks, flattened, so that the runtimes export it and the feature cache
  stores it like any backbone's features. It shares its modules with ``backbone`` (no copy
  of the weights) and keeps its ``weights_id`` and ``preprocessing``; its ``name``,
  ``"<name>[:-N]"``, keys the cache per N. ``num_features = C*h*w`` depends on the input
  side, hence ``image_size``.
- the **suffix**, ``(B, C*h*w)`` -> ``(B, C, h, w)`` -> the last N blocks -> the backbone's
  own pooling (and head layers) -> ``(B, D)``, the full backbone's features. Its blocks are
  deep copies, trainable (``requires_grad``): training the suffix leaves ``backbone`` and
  the prefix untouched. Named ``"<name>[-N:]"``; its state-dict keys depend only on
  (backbone, N), so a checkpoint's suffix loads into the split of a fresh backbone.

N = 0: the prefix is ``backbone`` itself (same name, so partial mode reads the frozen
mode's feature cache) and the suffix the identity on ``(B, D)`` without parameters: the
frozen head.

What a block is, per family (:func:`count_blocks` gives the allowed N, 0 to K):

=================  ====================================================  ==============
family             blocks, first to last                                 K
=================  ====================================================  ==============
EfficientNet       the inverted-residual (and depthwise-separable)       17 (Lite0)
(timm)             blocks of all stages, flattened; then the head conv
                   (``conv_head`` + ``bn2`` with its activation)
MobileNetV3        the blocks of all stages, flattened; then the head    13
(timm)             (global pool, then ``conv_head``, ``norm_head`` and   (small_050)
                   ``act2``: timm pools before its head conv)
ResNet             the residual blocks (BasicBlock / Bottleneck) of      8 (resnet18),
(torchvision,      ``layer1`` .. ``layer4``                               16 (34, 50),
timm)                                                                    4 (resnet10t)
VGG                each conv layer with its ReLU and the max-pool that   15 (vgg16),
(torchvision)      follows it, if any; then fc6 (with the 7 x 7           18 (vgg19)
                   average pool, flatten, ReLU); then fc7 (with the
                   dropout before it, ReLU)
=================  ====================================================  ==============

Why: a block is the unit the architecture repeats with its own weights, and a cut between
blocks is crossed by one tensor only (skip connections stay inside a residual block), so
the cache holds exactly what the rest of the network needs. The stems (ResNet's conv1 and
max-pool, EfficientNet's conv_stem) always stay in the prefix. VGG has no residual blocks,
so each conv layer is one; a max-pool closes the block before it, which makes the cache of
a cut at a stage end 4x smaller. Parameter-free pooling after the last block (global
average pool, flatten, timm's classifier dropout) is in every non-empty suffix. Other timm
families (ViT, ConvNeXt ...) are not split: ``--mode partial`` refuses them in one line.

BatchNorm: the trainer keeps every BatchNorm of a trainable backbone in eval mode
(:meth:`deephash.training.model.EmbeddingModel.train`), the suffix's included: running
statistics stay the pretrained ones, the affine weights (gamma, beta) train. The prefix's
activations are computed in eval mode too (they are cached features), so the whole network
normalises with the pretrained statistics. Dropout in the suffix (VGG's before fc7) is
active in training mode, as when finetuning the whole backbone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3
from timm.models.resnet import ResNet as TimmResNet
from torch import nn
from torchvision.models import VGG, ResNet

from deephash.backbones.base import Backbone
from deephash.errors import ConfigError


@dataclass
class Pieces:
    """A backbone body as ``stem -> blocks -> tail`` (applied in order, the body's forward)."""

    stem: list[nn.Module]
    blocks: list[nn.Module]
    tail: list[nn.Module]


def _efficientnet(body: Any) -> Pieces:
    blocks = [block for stage in body.blocks for block in stage]
    blocks.append(nn.Sequential(body.conv_head, body.bn2))
    dropout = [nn.Dropout(body.drop_rate)] if body.drop_rate > 0 else []
    return Pieces([body.conv_stem, body.bn1], blocks,
                  [body.global_pool, *dropout, body.classifier])


def _mobilenetv3(body: Any) -> Pieces:
    blocks = [block for stage in body.blocks for block in stage]
    blocks.append(nn.Sequential(body.global_pool, body.conv_head, body.norm_head, body.act2))
    dropout = [nn.Dropout(body.drop_rate)] if body.drop_rate > 0 else []
    return Pieces([body.conv_stem, body.bn1], blocks, [body.flatten, *dropout, body.classifier])


def _timm_resnet(body: Any) -> Pieces:
    blocks = [block for layer in (body.layer1, body.layer2, body.layer3, body.layer4)
              for block in layer]
    dropout = [nn.Dropout(float(body.drop_rate))] if body.drop_rate else []
    return Pieces([body.conv1, body.bn1, body.act1, body.maxpool], blocks,
                  [body.global_pool, *dropout, body.fc])


def _resnet(body: Any) -> Pieces:
    blocks = [block for layer in (body.layer1, body.layer2, body.layer3, body.layer4)
              for block in layer]
    return Pieces([body.conv1, body.bn1, body.relu, body.maxpool], blocks,
                  [body.avgpool, nn.Flatten(1), body.fc])


def _vgg(body: Any) -> Pieces:
    convs: list[list[nn.Module]] = []
    for module in body.features:
        if isinstance(module, nn.Conv2d) or not convs:
            convs.append([])
        convs[-1].append(module)
    fc = list(body.classifier)  # fc6, ReLU, Dropout, fc7, ReLU (deephash strips the rest)
    blocks: list[nn.Module] = [nn.Sequential(*layers) for layers in convs]
    blocks.append(nn.Sequential(body.avgpool, nn.Flatten(1), *fc[:2]))
    blocks.append(nn.Sequential(*fc[2:]))
    return Pieces([], blocks, [])


#: body type -> how it falls into pieces
FAMILIES: dict[type, Callable[[Any], Pieces]] = {
    EfficientNet: _efficientnet, MobileNetV3: _mobilenetv3, ResNet: _resnet,
    TimmResNet: _timm_resnet, VGG: _vgg,
}


def backbone_pieces(backbone: Backbone) -> Pieces:
    """``backbone.body``'s stem, blocks and tail (the body's own modules, shared)."""
    for family, pieces in FAMILIES.items():
        if isinstance(backbone.body, family):
            return pieces(backbone.body)
    raise ConfigError(f"backbone {backbone.name} ({type(backbone.body).__name__}) cannot be "
                      "split into blocks; --mode partial takes EfficientNet, MobileNetV3, "
                      "ResNet or VGG backbones (use --mode frozen or finetune)")


def count_blocks(backbone: Backbone) -> int:
    """K, the number of blocks of ``backbone``: ``split_backbone`` takes N from 0 to K."""
    return len(backbone_pieces(backbone).blocks)


def check_trainable_blocks(backbone: Backbone, trainable_blocks: int) -> None:
    """Raise ``ConfigError`` unless ``backbone`` splits and ``trainable_blocks`` is in
    0..:func:`count_blocks`."""
    total, n = count_blocks(backbone), trainable_blocks
    if not 0 <= n <= total:
        raise ConfigError(f"--trainable-blocks {n} is out of range for {backbone.name}, which "
                          f"has {total} blocks; use 0 to {total}")


class Suffix(nn.Module):
    """``(B, prod(shape))`` -> ``(B, *shape)`` -> blocks -> tail -> ``(B, D)``."""

    def __init__(self, shape: tuple[int, ...], blocks: nn.Sequential, tail: nn.Sequential):
        super().__init__()
        self.shape = shape
        self.blocks = blocks
        self.tail = tail

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        x = activations.reshape(activations.shape[0], *self.shape)
        return self.tail(self.blocks(x))


def _activation_shape(body: nn.Module, backbone: Backbone, image_size: int) -> tuple[int, ...]:
    """``body``'s output shape (without the batch) for one image, computed in eval mode
    (BatchNorm statistics untouched) with every module's mode restored afterwards."""
    reference = next(backbone.parameters())
    modes = [(module, module.training) for module in body.modules()]
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros(1, 3, image_size, image_size, dtype=reference.dtype,
                                   device=reference.device))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "RuntimeError"
        raise ConfigError(f"{backbone.name} cannot take {image_size} px images ({reason[:120]});"
                          " use a larger --image-size") from None
    finally:
        for module, mode in modes:
            module.training = mode
    return tuple(out.shape[1:])


def split_backbone(backbone: Backbone, trainable_blocks: int,
                   image_size: int) -> tuple[Backbone, Backbone]:
    """``(prefix, suffix)`` of ``backbone`` before its last ``trainable_blocks`` blocks, for
    ``image_size`` px inputs: ``suffix(prefix(x))`` is ``backbone(x)``.

    Raises ``ConfigError`` when ``trainable_blocks`` is not in 0..:func:`count_blocks`.
    """
    check_trainable_blocks(backbone, trainable_blocks)
    pieces = backbone_pieces(backbone)
    total, n = len(pieces.blocks), trainable_blocks
    name, pre, weights = backbone.name, backbone.preprocessing, backbone.weights_id
    if n == 0:
        identity = Suffix((backbone.num_features,), nn.Sequential(), nn.Sequential())
        suffix = Backbone(f"{name}[{total}:]", identity, backbone.num_features, pre, weights)
        return backbone, suffix.train(backbone.training)
    body = nn.Sequential(*pieces.stem, *pieces.blocks[:total - n])
    shape = _activation_shape(body, backbone, image_size)
    body.append(nn.Flatten(1))
    prefix = Backbone(f"{name}[:-{n}]", body, math.prod(shape), pre, weights)
    kept = Suffix(shape, nn.Sequential(*pieces.blocks[total - n:]),
                  nn.Sequential(*pieces.tail))
    originals = {id(module) for module in backbone.modules()}
    for module in (*prefix.modules(), *kept.modules()):  # the containers made here
        if id(module) not in originals:
            module.training = backbone.training
    suffix = Backbone(f"{name}[-{n}:]", copy.deepcopy(kept), backbone.num_features, pre,
                      weights)
    suffix.training = backbone.training
    suffix.requires_grad_(True)
    return prefix, suffix

