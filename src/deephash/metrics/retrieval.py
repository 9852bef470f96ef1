"""Retrieval metrics of one query, from the ranks of its relevant items.

Definitions (``ranks``: the ascending 1-based positions of the query's R relevant
database items in its ranking, see :mod:`deephash.metrics.ranking`; an item is relevant
when it shares a label with the query, :func:`deephash.labels.relevance`, which for
single-label data is having the query's label; the query's own copy is never in its
ranking):

* precision at the j-th relevant item: ``j / ranks[j-1]``.
* **AP@all** = (1/R) * sum over j of ``j / ranks[j-1]``: the mean of those precisions,
  i.e. scikit-learn's ``average_precision_score`` with scores = -distance. A query with
  R = 0 has AP 0.
* **AP@k** = sum over relevant items with rank <= k of their precision, divided by the
  number of relevant items *within the top k* (the divisor of the DTSH / DeepHash
  evaluation code, so figures compare with published ones); 0 when none is in the top k.
* **P@k** = (relevant items in the top k) / k'; k' = min(k, items ranked).
* **R@k** = (relevant items in the top k) / R (0 when R = 0).

mAP and mean P@k are the means of these over all queries.
"""

from __future__ import annotations

import numpy as np


def precisions_at_hits(ranks: np.ndarray) -> np.ndarray:
    """``(R,)`` precision at each relevant item: ``j / ranks[j-1]``."""
    return np.arange(1, len(ranks) + 1, dtype=np.float64) / ranks


def average_precision(ranks: np.ndarray, cutoff: int | None = None) -> float:
    """AP@all (``cutoff=None``) or AP@cutoff of one query, as defined above."""
    precisions = precisions_at_hits(ranks)
    if cutoff is not None:
        precisions = precisions[: int(np.searchsorted(ranks, cutoff, side="right"))]
    return float(precisions.mean()) if len(precisions) else 0.0


def hits_at(ranks: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """``(C,)`` number of relevant items within the top ``cutoffs[c]``."""
    return np.searchsorted(ranks, cutoffs, side="right")
