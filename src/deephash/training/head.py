"""The embedding head trained on top of the backbone's representation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deephash.errors import ConfigError

ACTIVATIONS = ("none", "tanh", "sign")


class EmbeddingHead(nn.Module):
    """``(B, in_dim)`` features -> ``(B, out_dim)`` embeddings.

    Features are standardised with fixed per-dimension statistics (``feature_mean``,
    ``feature_std``, set from the training features), then pass through
    ``Linear -> BatchNorm -> ReLU`` for each hidden width and a final ``Linear``;
    the output is L2-normalised when ``normalize``, and then passed through ``activation``:
    ``none``; ``tanh`` (relaxed K-bit codes in (-1, 1)); or ``sign`` (exact ±1 codes in the
    forward pass, with tanh's gradient in the backward pass: a straight-through estimator).
    """

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] = (512,), out_dim: int = 128,
                 normalize: bool = True, dropout: float = 0.0, activation: str = "none") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.layers = nn.Sequential(*layers)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown head activation {activation!r}; known: "
                              f"{', '.join(ACTIVATIONS)}")
        self.normalize = normalize
        self.activation = activation
        self.out_dim = out_dim
        self.feature_mean: torch.Tensor
        self.feature_std: torch.Tensor
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))

    def set_feature_statistics(self, features: torch.Tensor) -> None:
        """Standardise inputs with the mean and std of ``(N, in_dim)`` training features."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.layers((features - self.feature_mean) / self.feature_std)
        if self.normalize:
            x = F.normalize(x, dim=1)
        if self.activation == "none":
            return x
        relaxed = torch.tanh(x)
        if self.activation == "tanh":
            return relaxed
        hard = torch.where(relaxed >= 0, 1.0, -1.0).to(relaxed.dtype)
        return relaxed + (hard - relaxed).detach()  # forward: sign; backward: tanh
