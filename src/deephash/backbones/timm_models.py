"""Any timm model as a backbone: ``--backbone timm:NAME`` (``timm:convnext_tiny``,
``timm:vit_small_patch14_dinov2.lvd142m``: an architecture and, after a dot, a pretrained tag).

Features are the model's pooled pre-logits: timm builds it with ``num_classes=0``, so its
``forward`` is ``forward_head(forward_features(x), pre_logits=True)``, the ``(B, D)``
representation before the classifier (``D`` is timm's ``head_hidden_size``: some heads
widen the features past ``num_features``).

Preprocessing comes from the model's pretrained configuration
(``timm.data.resolve_model_data_config``): mean, std, interpolation and the pretrained input
side (``native_size``). deephash's own transform (:class:`deephash.data.TransformSpec`)
resizes the shorter side to ``--image-size`` and keeps the centre square, for every backbone:
timm's ``crop_pct`` is not applied. ``--image-size`` is the input side wherever the model
takes it: convolutional networks take any side; models whose patch grid is fixed at
construction (ViT, DeiT, EVA, BEiT, Swin: ``fixed_input_size`` in their configuration) are
built with ``dynamic_img_size=True`` where their class offers it, which resamples the
position embeddings to the input's grid on each forward (as timm's ``set_input_size`` does
once); a fixed-size model without that option takes its pretrained side only, and another
``--image-size`` is refused in one line (:func:`deephash.features.transform_spec`).

Weights (``--weights``):

- ``default``: timm's pretrained weights (``pretrained=True``), read from the Hugging Face
  cache or downloaded into it (``$HF_HOME``, ``~/.cache/huggingface``); offline without
  them, the error says to pass a file. ``weights_id`` is ``timm:<arch>.<tag>``.
- a path: a state dict of the timm model in timm's own format (``model.safetensors`` of
  the Hugging Face repository ``timm/<arch>.<tag>``, or ``torch.save(model.state_dict())``),
  with or without its classifier, loaded strictly. ``weights_id`` is the file's digest.
- ``none``: random initialisation (never cached).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from torch import nn

from deephash.backbones.base import (
    PRETRAINED,
    RANDOM,
    Backbone,
    Preprocessing,
    file_digest,
    load_state_dict_file,
    load_strict,
)
from deephash.errors import ConfigError, WeightsError

#: what ``--image-size`` resampling can use; timm's other values fall back to bilinear
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def check_timm_model(model_name: str) -> None:
    """Raise ``ConfigError`` unless timm knows ``model_name``'s architecture (and its
    pretrained tag, when one is given)."""
    arch, _, tag = model_name.partition(".")
    if not timm.is_model(arch):
        similar = timm.list_models(f"*{arch[:5]}*")[:4]
        hint = f" (similar: {', '.join(similar)})" if similar else ""
        raise ConfigError(f"timm {timm.__version__} has no model {arch!r}{hint}; "
                          "timm.list_models('*vit*') lists its models")
    try:
        timm.get_pretrained_cfg(model_name)
    except RuntimeError:  # a tag the architecture does not have
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{arch}.*")][:6]
        raise ConfigError(f"timm model {arch} has no pretrained tag {tag!r}; known: "
                          f"{', '.join(tags) or 'none'}") from None


def _create(model_name: str, pretrained: bool) -> Any:
    """``timm.create_model`` without a classifier; a model with a fixed patch grid takes
    any input side when its class offers ``dynamic_img_size``."""
    cfg = timm.get_pretrained_cfg(model_name)
    if cfg is not None and cfg.fixed_input_size:
        try:
            return timm.create_model(model_name, pretrained=pretrained, num_classes=0,
                                     dynamic_img_size=True)
        except TypeError as exc:  # raised by __init__ before any weights are read
            if "dynamic_img_size" not in str(exc):
                raise
    return timm.create_model(model_name, pretrained=pretrained, num_classes=0)


def _download(model_name: str) -> Any:
    """The model with timm's pretrained weights (Hugging Face cache, or downloaded)."""
    try:
        return _create(model_name, pretrained=True)
    except Exception as exc:  # offline (OSError and httpx errors), no weights (RuntimeError)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = (lines[0] if lines else type(exc).__name__)[:160]
        raise WeightsError(
            f"cannot get timm's pretrained weights of {model_name} ({reason}); online, they "
            "download into the Hugging Face cache (~/.cache/huggingface); offline, pass "
            f"--weights PATH (model.safetensors of huggingface.co/timm/{model_name}) or "
            "--weights none") from None


def _classifier_names(model: Any) -> tuple[str, ...]:
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def without_classifier(state: Mapping[str, torch.Tensor],
                       model: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` less the classifier's tensors that ``model`` (built with
    ``num_classes=0``) no longer has, so that a full timm state dict loads strictly."""
    kept = model.state_dict().keys()
    prefixes = tuple(f"{name}." for name in _classifier_names(model))
    return {key: value for key, value in state.items()
            if key in kept or not (prefixes and key.startswith(prefixes))}


def _load_file(model_name: str, path: Path) -> Any:
    model = _create(model_name, pretrained=False)
    state = without_classifier(load_state_dict_file(path), model)
    load_strict(model, state, str(path))
    return model


def preprocessing_of(model: Any) -> Preprocessing:
    """Mean, std, interpolation and input side of ``model``'s pretrained configuration."""
    data = resolve_model_data_config(model)
    channels, _, side = data["input_size"]
    if channels != 3 or len(data["mean"]) != 3:
        raise ConfigError(f"timm model {model.pretrained_cfg.get('architecture')} takes "
                          f"{channels}-channel images; deephash feeds RGB (3 channels)")
    interpolation = data["interpolation"] if data["interpolation"] in INTERPOLATIONS \
        else "bilinear"
    fixed = bool(model.pretrained_cfg.get("fixed_input_size")) and not getattr(
        model, "dynamic_img_size", False)
    return Preprocessing(mean=_triple(data["mean"]), std=_triple(data["std"]),
                         interpolation=interpolation, native_size=int(side), fixed_size=fixed,
                         side_step=_patch_side(model))


def _triple(values: Any) -> tuple[float, float, float]:
    first, second, third = (float(value) for value in values)
    return first, second, third


def _patch_side(model: Any) -> int:
    """The side an input must be a multiple of: the patch size of a patch embedding that
    pads nothing (timm's ``PatchEmbed`` asserts it), else 1."""
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if patch is None or getattr(embed, "dynamic_img_pad", False):
        return 1
    return int(patch[0] if isinstance(patch, (tuple, list)) else patch)


def _feature_dim(model: Any) -> int:
    """``D`` of the model's pooled pre-logits: timm's ``head_hidden_size`` (the width after
    a head's own layers, MobileNetV3's head conv), else ``num_features``."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def _weights_id(model_name: str, model: Any) -> str:
    arch, _, tag = model_name.partition(".")
    return f"timm:{arch}.{tag or model.pretrained_cfg.get('tag') or 'default'}"


class TimmBackbone(Backbone):
    """A timm model as a :class:`Backbone` (its ``body``, built with ``num_classes=0``)."""

    def exported(self, image_size: int) -> nn.Module:
        """A model built with ``dynamic_img_size`` resamples its position embeddings to each
        input's patch grid; the runtimes would compute that resampling themselves in the
        exported graph (ONNX has no antialiased bicubic, OpenVINO's differs by 1e-3). The
        export is a copy whose embeddings timm's ``set_input_size`` resampled once, in
        torch, for ``image_size``: the same values, and no resampling left in the graph."""
        if not (getattr(self.body, "dynamic_img_size", False)
                and hasattr(self.body, "set_input_size")):
            return self
        fixed = copy.deepcopy(self)
        body: Any = fixed.body
        body.set_input_size(img_size=(image_size, image_size))
        return fixed


def timm_backbone(model_name: str, weights: str = PRETRAINED) -> Backbone:
    """``timm:<model_name>`` as a :class:`Backbone`: ``(B, 3, H, W)`` -> ``(B, D)`` pooled
    pre-logits, with ``weights`` ``default``, ``none`` or a state-dict file."""
    check_timm_model(model_name)
    model: Any
    weights_id = None
    if weights == PRETRAINED:
        model = _download(model_name)
        weights_id = _weights_id(model_name, model)
    elif weights == RANDOM:
        model = _create(model_name, pretrained=False)
    else:
        path = Path(weights)
        model = _load_file(model_name, path)
        weights_id = f"file:{file_digest(path)}"
    return TimmBackbone(f"timm:{model_name}", model, _feature_dim(model),
                        preprocessing_of(model), weights_id)
