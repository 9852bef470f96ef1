"""Our exact Hamming index: packed codes in memory, XOR-popcount, exact top-k."""

from __future__ import annotations

from typing import Any

import numpy as np

from deephash.fileio import npz_array
from deephash.growing import GrowingArray
from deephash.hashing.codes import hamming_matrix
from deephash.index.base import BinaryIndex


class HammingIndex(BinaryIndex):
    """Exact k-NN in Hamming space; ties in insertion order.

    Queries are processed in chunks sized so that the ``(chunk, N)`` distance keys stay
    near 128 MB. Top-k uses ``argpartition`` on the unique key distance * N + position,
    so the result is exact and deterministic.
    """

    factory = "BFlat-numpy"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.codes = np.empty((0, -(-dim // 8)), dtype=np.uint8)
        self._grown = GrowingArray()  # spare room: an add copies its own codes only

    def _add(self, vectors: np.ndarray) -> None:
        self.codes = self._grown.append(self.codes, vectors)

    def reserve(self) -> None:
        super().reserve()
        self.codes = self._grown.append(self.codes, self.codes[:0])

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.codes)
        if n == 0:
            return (np.full((len(queries), k), -1, np.int32), np.full((len(queries), k), -1))
        chunk = max(1, (1 << 24) // n)
        distances = np.empty((len(queries), k), dtype=np.int32)
        positions = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), chunk):
            d = hamming_matrix(queries[start:start + chunk], self.codes)
            keys = d.astype(np.int64) * n + np.arange(n)
            if k < n:
                keys = np.partition(keys, k - 1, axis=1)[:, :k]
            keys.sort(axis=1)
            positions[start:start + len(d)] = keys % n
            distances[start:start + len(d)] = keys // n
        return distances, positions

    def _state(self) -> dict[str, Any]:
        return {"codes": self.codes}

    def _restore(self, state: dict[str, np.ndarray]) -> int:
        codes = npz_array(state, "codes", "u", 2)
        if codes.dtype != np.uint8 or codes.shape[1] != self.codes.shape[1]:
            raise ValueError(f"its codes are {codes.dtype} {codes.shape}, not {self.dim}-bit "
                             f"packed uint8 rows of {self.codes.shape[1]} bytes")
        self.codes = codes
        return len(codes)
