"""The trained model: an optional backbone (finetune mode) and the embedding head."""

from __future__ import annotations

import torch
from torch import nn

from deephash.backbones import Backbone, create_backbone
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.head import EmbeddingHead
from deephash.training.subnormals import flush_after_load


class EmbeddingModel(nn.Module):
    """Frozen mode: ``(B, D_features)`` features -> ``(B, embedding_dim)``.
    Partial mode: ``(B, C*h*w)`` cached activations -> the backbone's trainable last blocks
    (:func:`deephash.backbones.split.split_backbone`'s suffix) -> head.
    Finetune mode: ``(B, 3, H, W)`` images -> backbone -> head -> ``(B, embedding_dim)``."""

    def __init__(self, head: EmbeddingHead, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.head = head
        self.backbone = backbone
        # a checkpoint written before subnormals were flushed would slow inference on Intel
        self.register_load_state_dict_post_hook(flush_after_load)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            x = self.backbone(x)
        return self.head(x.float())

    def train(self, mode: bool = True) -> EmbeddingModel:
        super().train(mode)
        if self.backbone is not None:  # BatchNorm keeps its ImageNet statistics
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def build_model(cfg: TrainingConfig, in_dim: int, backbone: Backbone | None) -> EmbeddingModel:
    head = EmbeddingHead(in_dim, cfg.hidden_dims, cfg.embedding_dim, cfg.normalize, cfg.dropout,
                         cfg.activation)
    return EmbeddingModel(head, backbone if cfg.mode in ("partial", "finetune") else None)


def partial_split(config: TrainConfig, weights: str | None = None) -> tuple[Backbone, Backbone]:
    """A partial-mode run's backbone split before its trainable blocks: ``(prefix, suffix)``
    (:func:`deephash.backbones.split.split_backbone`), with ``weights`` (default: the
    configuration's; a checkpoint's suffix loads into a random one)."""
    from deephash.backbones.split import split_backbone

    backbone = create_backbone(config.backbone.name, weights or config.backbone.weights)
    return split_backbone(backbone, config.training.trainable_blocks,
                          config.backbone.image_size)
