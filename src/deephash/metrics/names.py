"""The figures of a run's ``metrics.json`` as people read them: readable names
(``knn_acc@1`` is ``kNN@1``), a reading order (the retrieval figures first, mAP@all before
each mAP@k, cut-offs ascending; then the index-order variants, the verification figures,
validation, the frozen yardstick, classifier codes, code health and the run's facts) and
the one line of headline test figures a command ends with."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: retrieval figures: ``map@all``, ``map@1000``, ``p@100``, ``knn_acc@1``, ``prec@r2``
_RETRIEVAL = re.compile(r"(map|p|knn_acc|prec)@(all|r?\d+)")
_STEMS = {"map": "mAP", "p": "P", "knn_acc": "kNN", "prec": "prec"}
#: key prefix -> (name prefix, group): validation, the frozen yardstick, classifier codes
_PREFIXES = {"frozen_val_": ("frozen val ", 4), "val_": ("val ", 3),
             "classifier_codes_": ("classifier codes ", 5)}
_INDEX_ORDER = "_index_order"
#: the other figures and facts, in reading order: key -> (name, group)
_OTHERS = {
    "triplet_acc": ("triplet accuracy", 2), "pair_auc": ("pair AUC", 2),
    "classifier_acc": ("classifier accuracy", 2),
    "code_distinct": ("distinct codes", 6), "code_bit_entropy": ("mean bit entropy", 6),
    "code_bit_balance": ("bit balance", 6),
    "protocol": ("protocol", 7), "distance": ("distance", 7), "bits": ("bits", 7),
    "n_query": ("queries", 7), "n_database": ("database items", 7),
    "best_epoch": ("best epoch", 7),
}
_UNKNOWN_GROUP = 8


def _split(key: str) -> tuple[str, int, str, bool]:
    """(name prefix, group of the prefix or 0, the key without prefix and suffix, whether
    it is an index-order figure)."""
    prefix, group = "", 0
    for start, (name, rank) in _PREFIXES.items():
        if key.startswith(start):
            prefix, group, key = name, rank, key[len(start):]
            break
    index_order = key.endswith(_INDEX_ORDER)
    return prefix, group, key.removesuffix(_INDEX_ORDER), index_order


def metric_name(key: str) -> str:
    """``map@all`` -> ``mAP@all``, ``knn_acc@1`` -> ``kNN@1``, ``p@100`` -> ``P@100``,
    ``val_map@all`` -> ``val mAP@all``, ``map@all_index_order`` -> ``mAP@all (index
    order)``, ``pair_auc`` -> ``pair AUC``; an unknown key with its underscores as spaces."""
    prefix, _group, base, index_order = _split(key)
    match = _RETRIEVAL.fullmatch(base)
    if match:
        name = f"{_STEMS[match.group(1)]}@{match.group(2)}"
    elif base in _OTHERS:
        name = _OTHERS[base][0]
    else:
        return key.replace("_", " ")
    return f"{prefix}{name}{' (index order)' if index_order else ''}"


def _order(key: str) -> tuple[Any, ...]:
    _prefix, group, base, index_order = _split(key)
    match = _RETRIEVAL.fullmatch(base)
    if match:
        stem, cut = match.groups()
        cutoff = -1 if cut == "all" else int(cut.lstrip("r"))
        return (group, int(index_order), list(_STEMS).index(stem), cutoff, key)
    if base in _OTHERS and not index_order:
        return (group or _OTHERS[base][1], 0, list(_OTHERS).index(base), 0, key)
    return (_UNKNOWN_GROUP, 0, 0, 0, key)


def metric_order(keys: Iterable[str]) -> list[str]:
    """``keys`` in reading order (module docstring)."""
    return sorted(keys, key=_order)


def headline(metrics: Mapping[str, Any], cutoff: int | None = None) -> str:
    """The test figures people quote, as one line: ``mAP@all 0.6210, mAP@1000 0.6862,
    kNN@1 0.7361, P@100 0.6743`` (``cutoff``: the protocol's own mAP@k, else 1000; a
    figure the run lacks or does not define, such as kNN on multi-label data, is left
    out)."""
    keys = ("map@all", f"map@{cutoff or 1000}", "knn_acc@1", "p@100")
    return ", ".join(f"{metric_name(key)} {metrics[key]:.4f}" for key in keys
                     if isinstance(metrics.get(key), (int, float))
                     and math.isfinite(metrics[key]))
