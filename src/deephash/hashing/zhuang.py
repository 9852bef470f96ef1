"""Zhuang et al. (CVPR 2016), "Fast training of triplet-based deep binary embedding networks".

Training alternates two steps:

1. **Binary code inference.** Binary codes B (``(N, K)`` ±1) for the training images are
   chosen to minimise a triplet objective over sampled triplets,
   ``sum max(0, m + d_H(b_a, b_p) - d_H(b_a, b_n))``, starting from the network's current
   codes. The paper solves each bit for blocks of images with GraphCut. **Replaced here by
   block coordinate descent:** for one bit at a time, every image of a random block gets
   the flip gain of that bit computed exactly with all other bits and images fixed, and the
   images whose flip lowers the objective are flipped; blocks are small enough (and
   resampled each sweep) that simultaneous flips rarely interact, and the objective is
   re-evaluated after each sweep so it never rises (a sweep that would raise it is undone).
   The objective decrease is reported per stage and tested.
2. **Hash function learning.** The network is trained to predict the inferred bits as K
   binary classification problems (sigmoid cross-entropy).

New images are coded as sign(network output).
"""

from __future__ import annotations

import numpy as np
import torch

from deephash.data.tuples import TupleSource
from deephash.labels import LabelsLike


def sample_triplets(labels: LabelsLike, per_anchor: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``(T, 3)`` random (anchor, positive, negative) triplets, ``per_anchor`` per image that
    has a positive (another image sharing a label: of its class, on single-label data) and
    a negative (an image sharing none); ``labels`` are ``(N,)`` class ids, a
    :class:`~deephash.labels.LabelSet` or a multi-hot matrix. Unlabelled images take no
    part. The draws are :meth:`deephash.data.tuples.TupleSource.every_anchor`'s."""
    return TupleSource(labels).every_anchor(per_anchor, rng)


def _gaps(codes: np.ndarray, triplets: np.ndarray) -> np.ndarray:
    """``(T,)`` d_H(a, p) - d_H(a, n) = (a.n - a.p) / 2 for ±1 codes."""
    a, p, n = (codes[triplets[:, i]].astype(np.int32) for i in range(3))
    return ((a * n).sum(1) - (a * p).sum(1)) / 2.0


def triplet_objective(codes: np.ndarray, triplets: np.ndarray, margin: float) -> float:
    """sum over triplets of max(0, margin + d_H(a, p) - d_H(a, n)); codes ±1."""
    return float(np.maximum(0.0, margin + _gaps(codes, triplets)).sum())


def _bit_gap(codes: np.ndarray, triplets: np.ndarray, bit: int) -> np.ndarray:
    """The contribution of one bit to every triplet's gap."""
    a, p, n = (codes[triplets[:, i], bit].astype(np.int32) for i in range(3))
    return (a * n - a * p) / 2.0


def _flip_gains(codes: np.ndarray, triplets: np.ndarray, gaps: np.ndarray, margin: float,
                bit: int, block: np.ndarray) -> np.ndarray:
    """For each image of ``block``, the objective change if its ``bit`` alone flipped."""
    a, p, n = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    ba, bp, bn = (codes[idx, bit].astype(np.int32) for idx in (a, p, n))
    before = np.maximum(0.0, margin + gaps)
    in_block = np.zeros(len(codes), dtype=bool)
    in_block[block] = True
    gains = np.zeros(len(codes))
    # flipping x's bit changes x.y by -2 x_k y_k: the gap moves by the amounts below
    for role, change in ((a, bp * ba - bn * ba), (p, ba * bp), (n, -ba * bn)):
        mask = in_block[role]
        after = np.maximum(0.0, margin + gaps[mask] + change[mask])
        np.add.at(gains, role[mask], after - before[mask])
    return gains[block]


def infer_codes(codes: np.ndarray, triplets: np.ndarray, margin: float, sweeps: int,
                block_size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Block coordinate descent on the triplet objective.

    Each sweep visits every bit, and for each bit every image once, in random blocks of
    ``block_size``; a block's improving flips are applied together and kept only if the
    objective did not rise. Returns the codes and the objective at the start and after
    each sweep (non-increasing).
    """
    codes = codes.copy()
    gaps = _gaps(codes, triplets)
    value = float(np.maximum(0.0, margin + gaps).sum())
    history = [value]
    for _ in range(sweeps):
        for bit in rng.permutation(codes.shape[1]):
            bit = int(bit)
            for block in np.array_split(rng.permutation(len(codes)),
                                        max(1, -(-len(codes) // block_size))):
                flip = block[_flip_gains(codes, triplets, gaps, margin, bit, block) < 0]
                if not len(flip):
                    continue
                old_bit = _bit_gap(codes, triplets, bit)
                codes[flip, bit] *= -1
                new_gaps = gaps - old_bit + _bit_gap(codes, triplets, bit)
                new_value = float(np.maximum(0.0, margin + new_gaps).sum())
                if new_value <= value:
                    gaps, value = new_gaps, new_value
                else:  # the simultaneous flips interacted badly: undo them
                    codes[flip, bit] *= -1
        history.append(value)
    return codes, history


def bit_targets(codes: np.ndarray) -> torch.Tensor:
    """±1 codes -> 0/1 float targets for the sigmoid cross-entropy."""
    return torch.from_numpy((codes > 0).astype(np.float32))
