"""Binary codes as packed ``uint8`` rows, and Hamming distances between them.

A K-bit code is the sign of a K-dimensional real vector u, with sign(0) = +1. As ±1
vectors b, b' the Hamming distance is (K - b·b') / 2. Codes are stored packed, eight
bits per byte in ``numpy.packbits`` order (first bit = most significant bit of the first
byte; +1 is a set bit), ``ceil(K / 8)`` bytes per row, trailing bits zero.
The distance itself is the ``hamming`` member of :mod:`deephash.distances`
(``codes``, ``code_matrix``, ``rowwise``); :func:`hamming_matrix` is its popcount kernel.
"""

from __future__ import annotations

import numpy as np
import torch


def binarize(u: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(n, K)`` real -> ``(n, K)`` int8 in {-1, +1}, with sign(0) = +1."""
    values = u.detach().cpu().numpy() if isinstance(u, torch.Tensor) else np.asarray(u)
    return np.where(values >= 0, 1, -1).astype(np.int8)


def straight_through_sign(u: torch.Tensor) -> torch.Tensor:
    """``(..., K)`` -> the same shape: sign(u) in {-1, +1} (sign(0) = +1) in the forward
    pass, the incoming gradient passed to ``u`` unchanged in the backward pass (the
    straight-through estimator; GreedyHash's hash layer, Su et al. 2018)."""
    hard = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
    return u + (hard - u).detach()


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """``(n, K)`` ±1 (or 0/1) -> ``(n, ceil(K/8))`` uint8."""
    return np.packbits(np.asarray(codes) > 0, axis=1)


def unpack_codes(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """``(n, ceil(K/8))`` uint8 -> ``(n, K)`` int8 ±1."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1, count=n_bits)
    return (bits.astype(np.int8) * 2 - 1).astype(np.int8)


def as_words(packed: np.ndarray) -> np.ndarray:
    """``(n, B)`` uint8 -> ``(n, ceil(B/8))`` uint64, zero-padded (XOR/popcount 8 bytes at once)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    n, width = packed.shape
    words = -(-width // 8)
    padded = np.zeros((n, words * 8), dtype=np.uint8)
    padded[:, :width] = packed
    return padded.view(np.uint64)


def hamming_matrix(queries: np.ndarray, database: np.ndarray,
                   block_words: int = 1 << 22) -> np.ndarray:
    """Packed ``(Q, B)`` and ``(N, B)`` codes -> ``(Q, N)`` int32 Hamming distances."""
    return words_hamming(as_words(queries), as_words(database), block_words)


def words_hamming(queries: np.ndarray, database: np.ndarray,
                  block_words: int = 1 << 22) -> np.ndarray:
    """``(Q, W)`` and ``(N, W)`` uint64 words (:func:`as_words`) -> ``(Q, N)`` int32
    Hamming distances (a caller searching one database many times converts it once).

    The database is processed in blocks so that the XOR temporary stays under
    ``block_words`` 64-bit words (32 MB); the result itself is ``Q x N`` int32.
    """
    q, d = queries, database
    out = np.empty((len(q), len(d)), dtype=np.int32)
    step = max(1, block_words // max(1, len(q) * q.shape[1]))
    for start in range(0, len(d), step):
        block = d[start:start + step]
        out[:, start:start + len(block)] = np.bitwise_count(
            q[:, None, :] ^ block[None, :, :]).sum(axis=2, dtype=np.int32)
    return out
