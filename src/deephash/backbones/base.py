"""The backbone contract: a frozen feature extractor that carries its own preprocessing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from deephash.errors import WeightsError
from deephash.fileio import file_sha256
from deephash.safe_load import UnsafeFileError, safe_torch_load

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``--weights`` values that are not paths.
PRETRAINED, RANDOM = "default", "none"


@dataclass(frozen=True)
class Preprocessing:
    """How the pretrained weights expect pixels: normalisation, resampling, native size.

    ``fixed_size``: the network takes ``native_size`` px images only (a timm model whose
    patch grid cannot change); the others take any ``--image-size`` that is a multiple of
    ``side_step`` (a vision transformer's patch size, 1 for convolutional networks).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    native_size: int = 224
    fixed_size: bool = False
    side_step: int = 1


class Backbone(nn.Module):
    """``(B, 3, H, W)`` normalised images -> ``(B, num_features)`` features.

    Features are the representation before the classifier: globally pooled features for
    ResNet and EfficientNet, fc7 (after its ReLU) for VGG, the pooled pre-logits of a timm
    model (:mod:`deephash.backbones.timm_models`).

    Attributes:
        name: registry name.
        num_features: feature dimension D.
        preprocessing: what the data pipeline must do to images (read from here only).
        weights_id: identifies the weights for the feature cache; ``None`` for random
            initialisation, whose features are never cached.
    """

    def __init__(self, name: str, body: nn.Module, num_features: int,
                 preprocessing: Preprocessing, weights_id: str | None) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.num_features = num_features
        self.preprocessing = preprocessing
        self.weights_id = weights_id

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def exported(self, image_size: int) -> nn.Module:
        """The module a runtime exports for ``image_size`` px inputs (``deephash.runtimes``):
        the backbone itself; a subclass may fix what depends on the side first."""
        del image_size
        return self


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256."""
    return file_sha256(path)[:16]


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: a ``.safetensors`` file, or a torch file (plain, or
    under a ``state_dict``/``model`` key)."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        return _load_safetensors(path)
    try:
        data = safe_torch_load(path)
    except UnsafeFileError as failure:
        raise WeightsError(f"cannot load weights file {path}: {failure.reason}; pass a "
                           "state-dict file saved with torch.save") from None
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
    if not isinstance(data, Mapping):
        raise WeightsError(f"weights file {path} holds no state dict")
    return dict(data)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (a format without code, so nothing to refuse)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise WeightsError(f"cannot load weights file {path}: {reason}; pass a .safetensors "
                           "file written by safetensors, or a state dict saved with "
                           "torch.save") from None


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a short, actionable error."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[-1].strip()
        raise WeightsError(f"weights from {source} do not fit {type(model).__name__}: "
                           f"{first}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:3])}"
                        f"{' ...' if len(result.missing_keys) > 3 else ''}")
    if result.unexpected_keys:
        problems.append(f"unexpected {', '.join(result.unexpected_keys[:3])}"
                        f"{' ...' if len(result.unexpected_keys) > 3 else ''}")
    if problems:
        raise WeightsError(f"weights from {source} do not fit {type(model).__name__}: "
                           f"{'; '.join(problems)}")
