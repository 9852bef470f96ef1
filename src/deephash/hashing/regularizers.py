"""Regularisers that pull relaxed codes towards good binary codes; usable with any loss.

Each takes the batch's relaxed codes ``u`` ``(B, K)`` and returns a scalar:

- ``quantization``: mean over the batch of ||u - sign(u)||² (DTSH's λ term): codes near ±1;
- ``balance``: mean over bits of (mean over the batch of u_k)²: each bit +1 for about half
  the images, so that no bit is wasted on a constant.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deephash.errors import ConfigError


def quantization(u: torch.Tensor) -> torch.Tensor:
    target = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
    return (u - target).square().sum(dim=1).mean()


def balance(u: torch.Tensor) -> torch.Tensor:
    return u.mean(dim=0).square().mean()


REGULARIZERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quantization": quantization, "balance": balance}


def get_regularizer(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in REGULARIZERS:
        raise ConfigError(f"unknown regulariser {name!r}; known: {', '.join(REGULARIZERS)}")
    return REGULARIZERS[name]
