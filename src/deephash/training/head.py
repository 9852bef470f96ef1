"""The embedding head trained on top of the backbone's representation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deephash.errors import ConfigError
from deephash.hashing.codes import straight_through_sign
from deephash.registries import ACTIVATIONS

#: A live dimension's std is raised to at least this fraction of the median std of the live
#: dimensions, so standardisation amplifies no dimension more than 1 / STD_FLOOR (10) times a
#: typical one.
STD_FLOOR = 0.1
#: A dimension whose std is at most this fraction of that median is constant on the training
#: set ("dead": at 32 px, 242 of Lite0's 1,280 are exactly zero on every CIFAR-10 image).
DEAD_STD = 1e-6


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(in_dim,)`` mean and std that standardise ``(N, in_dim)`` training features.

    A dead dimension gets std = inf, so it enters the head as exactly 0: it carried nothing
    the head could learn, and a value it takes elsewhere (a mirrored view, a query) would
    otherwise be multiplied by up to 1e6. A near-constant one gets std = ``STD_FLOOR`` times
    the median std of the live dimensions.
    """
    features = features.float()  # as before the floor: healthy dimensions keep their bits
    mean = features.mean(0)
    std = features.std(0) if len(features) > 1 else torch.zeros_like(mean)
    std = torch.nan_to_num(std, nan=0.0, posinf=0.0)
    typical = float(std[std > 0].median()) if bool((std > 0).any()) else 0.0
    dead = std <= DEAD_STD * typical
    return mean, torch.where(dead, torch.inf, std.clamp_min(STD_FLOOR * typical))


def _fold_biases_before_batch_norm(head: EmbeddingHead, state: dict[str, Any], prefix: str,
                                   *_: Any) -> None:
    """Checkpoints written while hidden Linears had a bias: BatchNorm in eval mode computes
    ``(Wx + b - mean) / s``, so the bias moves into the running mean (``mean - b``) and the
    head computes the same function."""
    for number, layer in enumerate(head.layers):
        bias, mean = (f"{prefix}layers.{number}.bias", f"{prefix}layers.{number + 1}.running_mean")
        if isinstance(layer, nn.Linear) and layer.bias is None and bias in state \
                and mean in state:
            state[mean] = state[mean] - state.pop(bias)


class EmbeddingHead(nn.Module):
    """``(B, in_dim)`` features -> ``(B, out_dim)`` embeddings.

    Features are standardised with fixed per-dimension statistics (``feature_mean``,
    ``feature_std``, set from the training features; dead dimensions have std = inf and
    enter as 0, see :func:`feature_statistics`), then pass through
    ``Linear -> BatchNorm -> ReLU`` for each hidden width (the Linear without a bias,
    which BatchNorm would subtract again: its gradient is float noise, which Adam turns
    into steps of the full learning rate) and a final ``Linear``;
    the output is L2-normalised when ``normalize``, and then passed through ``activation``:
    ``none``; ``tanh`` (relaxed K-bit codes in (-1, 1)); ``sign`` (exact ±1 codes in the
    forward pass, with tanh's gradient in the backward pass: a straight-through estimator);
    or ``sign-identity`` (exact ±1 codes, the gradient passed through unchanged:
    GreedyHash's hash layer, :func:`~deephash.hashing.codes.straight_through_sign`).
    """

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...] = (512,), out_dim: int = 128,
                 normalize: bool = True, dropout: float = 0.0, activation: str = "none") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden),
                       nn.ReLU(inplace=True)]
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
        self._register_load_state_dict_pre_hook(_fold_biases_before_batch_norm, with_module=True)

    def set_feature_statistics(self, features: torch.Tensor) -> None:
        """Standardise inputs with robust statistics of ``(N, in_dim)`` training features
        (:func:`feature_statistics`)."""
        mean, std = feature_statistics(features)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.layers((features - self.feature_mean) / self.feature_std)
        if self.normalize:
            x = F.normalize(x, dim=1)
        if self.activation == "none":
            return x
        if self.activation == "sign-identity":
            return straight_through_sign(x)  # forward: sign; backward: identity
        relaxed = torch.tanh(x)
        if self.activation == "tanh":
            return relaxed
        return straight_through_sign(relaxed)  # forward: sign; backward: tanh's
