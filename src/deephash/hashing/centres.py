"""Class codes: one K-bit ±1 target code per class, fixed before training.

CSQ (Yuan et al. 2020) calls them *hash centres*, OrthoHash (Hoe et al. 2021) a
*codebook*; both want codes far apart in Hamming distance, ideally K / 2 (orthogonal):

- :func:`hadamard`: the Sylvester Hadamard matrix ``H_K`` (K a power of two), whose rows
  are ±1, pairwise orthogonal (Hamming distance exactly K / 2);
- :func:`hadamard_centres`: CSQ's centres, the first C rows of ``[H_K; -H_K]`` (a row and
  its negation are K bits apart, any other two K / 2), when K is a power of two and
  C <= 2K; otherwise :func:`bernoulli_centres`;
- :func:`bernoulli_centres`: every bit drawn from Bernoulli(0.5) as ±1 (CSQ's fallback,
  OrthoHash's default codebook): nearly orthogonal for large K. Drawn from a
  ``torch.Generator`` seeded with ``seed``, so the same arguments give the same codes on
  every machine; redrawn (from the same generator) until the C codes are distinct, where
  2^K >= C allows it.
- :func:`label_set_centres`: each image's target from its label set: its class's code, or
  for several labels CSQ's centre of the set, the sign of the mean of their codes (a tie,
  0, takes that bit of a fixed random code).
"""

from __future__ import annotations

import torch

#: draws of :func:`bernoulli_centres` before accepting repeated codes
MAX_DRAWS = 100


def is_power_of_two(k: int) -> bool:
    return k >= 1 and k & (k - 1) == 0


def hadamard(k: int) -> torch.Tensor:
    """``(K, K)`` ±1 Sylvester Hadamard matrix, ``H H^T = K I``; K a power of two."""
    if not is_power_of_two(k):
        raise ValueError(f"a Sylvester Hadamard matrix has a power-of-two order, not {k}")
    matrix = torch.ones(1, 1)
    while len(matrix) < k:
        matrix = torch.cat([torch.cat([matrix, matrix], 1), torch.cat([matrix, -matrix], 1)])
    return matrix


def bernoulli_centres(num_classes: int, bits: int, seed: int) -> torch.Tensor:
    """``(C, K)`` ±1 codes, each bit +1 with probability 0.5 (seeded, see module)."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.empty(0, bits)
    for _ in range(MAX_DRAWS):
        codes = torch.randint(0, 2, (num_classes, bits), generator=generator).float() * 2 - 1
        if bits >= 63 or 2 ** bits < num_classes or len(codes.unique(dim=0)) == num_classes:
            return codes
    return codes


def hadamard_centres(num_classes: int, bits: int, seed: int) -> torch.Tensor:
    """``(C, K)`` CSQ hash centres: rows of ``[H_K; -H_K]`` when K is a power of two and
    C <= 2K, else :func:`bernoulli_centres` (``seed`` is used only then)."""
    if is_power_of_two(bits) and num_classes <= 2 * bits:
        matrix = hadamard(bits)
        return torch.cat([matrix, -matrix])[:num_classes].clone()
    return bernoulli_centres(num_classes, bits, seed)


def label_set_centres(centres: torch.Tensor, labels: torch.Tensor,
                      tie_break: torch.Tensor) -> torch.Tensor:
    """``(C, K)`` class codes and ``(B,)`` int64 ids or ``(B, C)`` bool multi-hot rows ->
    ``(B, K)`` ±1 targets: the class's code; for a label set, sign(sum of its classes'
    codes) (the sign of their mean), a 0 bit (a tie, or no label) taken from
    ``tie_break`` ``(K,)`` ±1."""
    if labels.dim() == 1:
        return centres[labels]
    summed = labels.to(centres.dtype) @ centres
    return torch.where(summed == 0, tie_break.expand_as(summed), summed.sign())


__all__ = ["bernoulli_centres", "hadamard", "hadamard_centres", "is_power_of_two",
           "label_set_centres"]
