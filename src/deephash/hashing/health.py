"""Code health: is a set of binary codes using its bits, or has it collapsed?

A hashing run can score at chance while every command exits 0: all images share a handful
of codes, or most bits are constant. Three figures say so at a glance:

- ``code_distinct``: distinct codes among the items (collapsed when fewer than the classes);
- ``code_bit_balance``: per bit, the fraction of items whose bit is +1 (0.5 is ideal,
  0 or 1 a constant, wasted bit);
- ``code_bit_entropy``: the mean over bits of the binary entropy of that fraction, in bits
  (1 for balanced bits, 0 for constant ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deephash.hashing.codes import unpack_codes

#: Mean bit entropy below which codes are reported as nearly constant.
LOW_ENTROPY = 0.5


@dataclass(frozen=True)
class CodeHealth:
    distinct: int
    bit_balance: tuple[float, ...]  # (K,) fraction of +1 per bit
    bit_entropy: float  # mean binary entropy over bits, in [0, 1]

    def as_metrics(self) -> dict[str, int | float | list[float]]:
        return {"code_distinct": self.distinct, "code_bit_balance": list(self.bit_balance),
                "code_bit_entropy": self.bit_entropy}

    def problems(self, n_classes: int) -> list[str]:
        """One phrase per sign of collapse (empty when the codes look healthy)."""
        found = []
        if self.distinct < n_classes:
            found.append(f"{self.distinct} distinct code(s) for {n_classes} classes")
        constant = sum(b in (0.0, 1.0) for b in self.bit_balance)
        if constant:
            found.append(f"{constant} of {len(self.bit_balance)} bits constant")
        if self.bit_entropy < LOW_ENTROPY:
            found.append(f"mean bit entropy {self.bit_entropy:.2f} < {LOW_ENTROPY}")
        return found


def code_health(packed: np.ndarray, n_bits: int) -> CodeHealth:
    """Health of ``(N, ceil(K/8))`` packed codes (N ≥ 1)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if len(packed) == 0:
        raise ValueError("code health needs at least one code")
    distinct = len(np.unique(packed, axis=0))
    ones = (unpack_codes(packed, n_bits) > 0).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -(np.nan_to_num(ones * np.log2(ones))
                    + np.nan_to_num((1 - ones) * np.log2(1 - ones)))
    return CodeHealth(distinct, tuple(float(b) for b in ones), float(entropy.mean()))
