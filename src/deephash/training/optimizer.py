"""The optimizer of triplet and Zhuang training: Adam, with subnormals flushed after each step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deephash.training.config import TrainingConfig
from deephash.training.model import EmbeddingModel
from deephash.training.subnormals import flush_after_each_step


def build_optimizer(cfg: TrainingConfig, model: EmbeddingModel,
                    loss: nn.Module) -> torch.optim.Adam:
    """Adam over the head (``cfg.lr``), the backbone in finetune mode (``cfg.backbone_lr``)
    and the loss's own parameters if any (the softmax classifier, ``cfg.lr``), with L2
    weight decay ``cfg.weight_decay`` added to the gradient.

    Values that decay into the subnormal range (weights with no loss gradient, their Adam
    moments, BatchNorm statistics of dead units) are set to 0 after every step, so an epoch
    costs the same at the end of a long run as at its start on any CPU
    (:mod:`deephash.training.subnormals`).
    """
    groups: list[dict[str, Any]] = [{"params": model.head.parameters(), "lr": cfg.lr}]
    if model.backbone is not None:
        groups.append({"params": model.backbone.parameters(), "lr": cfg.backbone_lr})
    if any(True for _ in loss.parameters()):  # the softmax classifier's class weights
        groups.append({"params": loss.parameters(), "lr": cfg.lr})
    optimizer = torch.optim.Adam(groups, weight_decay=cfg.weight_decay)
    flush_after_each_step(optimizer, model, loss)
    return optimizer
