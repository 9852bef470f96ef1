"""The continuous outputs beside an index's codes: what Hamming ties are re-ranked by.

A hashing model's index folder keeps, per generation, ``outputs.npz`` (``outputs-<g>.npz``
after adds): ``outputs``, the ``(N, K)`` relaxed codes (the model's outputs before the
sign) as float16, row ``r`` being item ``r``'s; ``index.json["outputs_file"]`` names it.
float16 keeps three decimal digits, plenty to order items whose codes tie, at a quarter of
float64's memory (96 MB for a million 48-bit items). Folders written before it existed,
and float-embedding folders (their index holds the outputs themselves), have none: their
ties break in a seeded random order (:mod:`deephash.index.rerank`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deephash.errors import ConfigError
from deephash.fileio import save_npz

#: the first generation's file (``outputs-<g>.npz`` after adds)
OUTPUTS = "outputs.npz"


def save_outputs(path: Path, outputs: np.ndarray) -> None:
    """Write ``(N, K)`` outputs as float16 (atomically, like every file of a generation)."""
    save_npz(path, outputs=np.asarray(outputs, dtype=np.float16))


def load_outputs(path: Path, n_items: int) -> np.ndarray:
    """``(n_items, K)`` float16 outputs from ``path``; ``ConfigError`` when the file is
    unreadable or holds another number of rows."""
    try:
        with np.load(path, allow_pickle=False) as data:
            outputs = np.asarray(data["outputs"], dtype=np.float16)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; rebuild the folder with deephash "
                          "index") from None
    if outputs.ndim != 2 or len(outputs) != n_items:
        raise ConfigError(f"{path} holds {len(outputs)} continuous outputs for {n_items} "
                          "items; rebuild the folder with deephash index")
    return outputs
