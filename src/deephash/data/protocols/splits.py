"""The splits of one protocol instance and their file, ``splits.json``.

Splits hold *pool indices* (see :class:`~deephash.data.dataset.ImageDataset`), sorted
ascending. Model selection reads only ``val`` (as queries) against ``train`` (as the
database); ``query`` against ``database`` is the test protocol.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLIT_NAMES = ("train", "val", "query", "database")


@dataclass(frozen=True)
class Splits:
    """Index arrays (``(n,)`` int64, sorted) of one protocol instance.

    ``headline``: the metric the field reports for this protocol (``"map@5000"``,
    ``"map@all"``), ``None`` for protocols without one (``cifar10``, ``dtsh-1``);
    ``held_out``: the class ids that ``unseen:N`` keeps out of training, else empty.
    """

    protocol: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    query: np.ndarray
    database: np.ndarray
    headline: str | None = None
    held_out: tuple[int, ...] = ()

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}

    @property
    def map_cutoff(self) -> int | None:
        """k of the headline ``map@k`` (``None`` for ``map@all`` or no headline): the
        evaluation adds it to ``--map-cutoffs``."""
        match = re.fullmatch(r"map@(\d+)", self.headline or "")
        return int(match.group(1)) if match else None

    def to_json(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """Write the splits; ``headline`` and ``held_out`` only when set, so the file of a
        protocol without them is what it always was."""
        payload: dict[str, Any] = {"protocol": self.protocol, "seed": self.seed,
                                   "sizes": self.sizes()}
        if self.headline is not None:
            payload["headline"] = self.headline
        if self.held_out:
            payload["held_out"] = list(self.held_out)
        payload.update(extra or {})
        payload.update({name: getattr(self, name).tolist() for name in SPLIT_NAMES})
        path.write_text(json.dumps(payload))

    @classmethod
    def from_json(cls, path: Path) -> Splits:
        data = json.loads(Path(path).read_text())
        arrays = {name: np.asarray(data[name], dtype=np.int64) for name in SPLIT_NAMES}
        return cls(protocol=data["protocol"], seed=int(data["seed"]), **arrays,
                   headline=data.get("headline"),
                   held_out=tuple(int(c) for c in data.get("held_out", ())))
