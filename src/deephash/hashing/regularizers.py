"""Regularisers that pull relaxed codes towards good binary codes; usable with any loss.

Each takes the batch's relaxed codes ``u`` ``(B, K)`` and returns a scalar; the names are
registered in :data:`deephash.registries.REGULARIZERS` (``--regularizers NAME=WEIGHT``):

- ``quantization``: mean over the batch of ||u - sign(u)||² (DTSH's λ term): codes near ±1;
  per code :func:`quantization_error`, which with another power p is Σ_k ||u_k| - 1|^p
  (CSQ's term, p = 2, and GreedyHash's, p = 3, inside those losses);
- ``balance``: ||mean over the batch of u||², i.e. the sum over bits of (mean of u_k)²:
  each bit +1 for about half the images, so that no bit is wasted on a constant, and no
  component is common to every code. Summed over bits like ``quantization``, so one weight
  means the same at every code length.

Why DTSH needs ``balance``: a component shared by every code (the ReLU hidden layer's mean
activation through the last layer gives one at initialisation) changes θ_ap and θ_an alike,
and over all triplets of a balanced P x K batch its gradients cancel exactly, so the
likelihood never removes it, while ``quantization`` saturates it. On small data the codes
then collapse onto it (c1000 at 32 px: 50 distinct 48-bit codes, mean bit entropy 0.22).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deephash.registries import REGULARIZERS


def quantization_error(u: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """``(B, K)`` relaxed codes -> ``(B,)``: Σ_k |u_k - sign(u_k)|^power, i.e.
    Σ_k ||u_k| - 1|^power (sign(0) = +1)."""
    gap = u - torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
    return (gap.square() if power == 2 else gap.abs().pow(power)).sum(dim=1)


def quantization(u: torch.Tensor) -> torch.Tensor:
    return quantization_error(u).mean()


def balance(u: torch.Tensor) -> torch.Tensor:
    return u.mean(dim=0).square().sum()


def get_regularizer(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The regulariser registered as ``name`` (``ConfigError`` naming the known ones)."""
    return REGULARIZERS.get(name)


__all__ = ["REGULARIZERS", "balance", "get_regularizer", "quantization", "quantization_error"]
