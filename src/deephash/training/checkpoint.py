"""Checkpoints that carry their configuration, so a model is rebuilt from the file alone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from deephash.backbones import RANDOM, create_backbone
from deephash.config import from_dict, to_dict
from deephash.errors import ConfigError
from deephash.fileio import save_bytes
from deephash.training.config import TrainConfig
from deephash.training.model import EmbeddingModel, build_model


def save_checkpoint(path: Path, config: TrainConfig, model: EmbeddingModel,
                    **extra: Any) -> None:
    """Atomically write ``{"config", "in_dim", "model", **extra}``."""
    payload = {"config": to_dict(config), "in_dim": model.head.layers[0].in_features,
               "model": model.state_dict(), **extra}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    save_bytes(path, buffer.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConfigError(f"cannot read checkpoint {path}: {exc}") from None


def load_model(path: Path) -> tuple[TrainConfig, EmbeddingModel]:
    """Rebuild the configuration and the model (eval mode) from a checkpoint file."""
    payload = read_checkpoint(path)
    config = from_dict(TrainConfig, payload["config"])
    backbone = None
    if config.training.mode == "finetune":  # weights come from the checkpoint itself
        backbone = create_backbone(config.backbone.name, RANDOM)
    model = build_model(config.training, int(payload["in_dim"]), backbone)
    model.load_state_dict(payload["model"])
    return config, model.eval()
