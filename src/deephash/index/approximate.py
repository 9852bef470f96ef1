"""What approximate faiss indexes need besides storage: training on a sample, and search-time
settings (``nprobe`` of IVF, ``efSearch`` of HNSW) kept with the index.

*Training.* An index that must learn its structure (IVF's coarse centroids, PQ's codebooks,
OPQ/PCA rotations, binary IVF's centroids) is trained on its first :meth:`add`'s vectors, on
a sample of at most ``train_sample`` rows drawn with seed :data:`TRAIN_SEED` (sorted, so the
sample does not depend on anything but the rows). The default cap, :func:`default_sample`,
is 256 vectors per IVF list (faiss's k-means uses no more) and at least 65,536; fewer rows
than IVF lists, or than a product quantiser's 256 centroids, is a one-line ``ConfigError``
suggesting a smaller ``nlist``.

*Settings.* ``{"nprobe": int, "efSearch": int}`` (only the ones the structure has) are set
through the faiss structure (``ParameterSpace`` for float indexes, which reaches inside
pre-transforms; attributes for binary ones), read back from it, and saved as JSON beside the
faiss bytes, so a reloaded index searches as it was saved until told otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from deephash.errors import ConfigError
from deephash.index.faiss_library import faiss

#: the seed of the training sample
TRAIN_SEED = 0
#: the smallest default training sample (when the index has few or no IVF lists)
MIN_DEFAULT_SAMPLE = 1 << 16
#: search-time settings and the structure each belongs to
SETTINGS = {"nprobe": "IVF", "efSearch": "HNSW"}


def ivf_lists(structure: Any) -> int:
    """How many inverted lists ``structure`` has (0: not an IVF index)."""
    if isinstance(structure, faiss.IndexBinary):
        return int(getattr(faiss.downcast_IndexBinary(structure), "nlist", 0))
    try:
        return int(faiss.extract_index_ivf(structure).nlist)
    except RuntimeError:
        return 0


def default_sample(structure: Any) -> int:
    """The default cap of the training sample: 256 per IVF list, at least 65,536."""
    return max(256 * ivf_lists(structure), MIN_DEFAULT_SAMPLE)


def train(structure: Any, vectors: np.ndarray, factory: str, cap: int | None) -> None:
    """Train ``structure`` (built from ``factory``) on at most ``cap`` rows of ``vectors``
    (``None``: :func:`default_sample`), a seeded sample; ``ConfigError`` when too few."""
    n, nlist = len(vectors), ivf_lists(structure)
    if n < max(nlist, 1):
        raise ConfigError(f"index {factory} needs at least {nlist:,} vectors to train its "
                          f"{nlist:,} lists, the collection has {n:,}; choose a smaller nlist "
                          f"(about 4*sqrt(N): IVF{suggest_nlist(n)})")
    size = min(n, default_sample(structure) if cap is None else cap)
    if size < n:
        rows = np.sort(np.random.default_rng(TRAIN_SEED).choice(n, size, replace=False))
        vectors = vectors[rows]
    try:
        structure.train(np.ascontiguousarray(vectors))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1].split("failed: ")[-1]
        raise ConfigError(f"index {factory} cannot be trained on {len(vectors):,} vectors "
                          f"({reason}); give more vectors (--train-sample) or a smaller index "
                          f"(IVF{suggest_nlist(n)}, PQ with fewer bits)") from None


def suggest_nlist(n: int) -> int:
    """A power of two near ``4 * sqrt(n)`` and at most ``n / 39`` (faiss's k-means wants 39
    vectors per list), at least 1."""
    lists = 2 ** max(0, round(float(np.log2(4 * np.sqrt(max(n, 1))))))
    while lists > max(1.0, n / 39):
        lists //= 2
    return int(lists)


def _has(structure: Any, name: str) -> bool:
    if name == "nprobe":
        return ivf_lists(structure) > 0
    inner = (faiss.downcast_IndexBinary(structure) if isinstance(structure, faiss.IndexBinary)
             else _innermost(structure))
    return hasattr(inner, "hnsw") or hasattr(getattr(inner, "quantizer", None), "hnsw")


def _innermost(structure: Any) -> Any:
    """The index inside faiss's pre-transform and refine wrappers."""
    inner = faiss.downcast_index(structure)
    while isinstance(inner, faiss.IndexPreTransform | faiss.IndexRefine):
        inner = faiss.downcast_index(inner.index if isinstance(inner, faiss.IndexPreTransform)
                                     else inner.base_index)
    return inner


def applicable(structure: Any) -> tuple[str, ...]:
    """The settings ``structure`` has (``nprobe`` for IVF, ``efSearch`` for HNSW)."""
    return tuple(name for name in SETTINGS if _has(structure, name))


def apply_settings(structure: Any, factory: str, settings: dict[str, int | None]) -> None:
    """Set ``settings`` (``None`` values are left as they are) on ``structure``;
    ``ConfigError`` for one it does not have or a value below 1."""
    for name, value in settings.items():
        if value is None:
            continue
        if name not in SETTINGS or not _has(structure, name):
            raise ConfigError(f"{name} applies to {SETTINGS.get(name, 'other')} indexes and "
                              f"{factory} has none; leave it out")
        if int(value) < 1:
            raise ConfigError(f"{name} must be at least 1 (got {value})")
        if isinstance(structure, faiss.IndexBinary):
            inner: Any = faiss.downcast_IndexBinary(structure)
            if name == "nprobe":
                inner.nprobe = int(value)
            else:
                inner.hnsw.efSearch = int(value)
        else:
            faiss.ParameterSpace().set_index_parameter(structure, name, int(value))


def read_settings(structure: Any) -> dict[str, int]:
    """The current values of the settings ``structure`` has."""
    found = {}
    for name in applicable(structure):
        if isinstance(structure, faiss.IndexBinary):
            binary: Any = faiss.downcast_IndexBinary(structure)
            found[name] = int(binary.nprobe if name == "nprobe" else binary.hnsw.efSearch)
        elif name == "nprobe":
            found[name] = int(faiss.extract_index_ivf(structure).nprobe)
        else:
            wrapped: Any = _innermost(structure)
            owner: Any = (wrapped if hasattr(wrapped, "hnsw")
                          else faiss.downcast_index(wrapped.quantizer))
            hnsw = owner.hnsw
            found[name] = int(hnsw.efSearch)
    return found


def settings_json(settings: dict[str, Any]) -> np.ndarray:
    """``settings`` as the 0-d text array an index file stores."""
    return np.array(json.dumps(settings, sort_keys=True))


def parse_settings(text: str) -> dict[str, Any]:
    """The settings of an index file (``ValueError`` for anything but a JSON object)."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("its settings are not JSON") from None
    if not isinstance(settings, dict):
        raise ValueError("its settings are not a JSON object")
    return settings
