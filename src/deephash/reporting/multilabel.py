"""The tables of issue 21's measurements: multi-label retrieval, and classes never seen.

``benchmarks/bench_multilabel.py`` runs the quick study's stages on two settings and
records each finished run folder's figures with :func:`run_figures`:

- **multi-label**: CIFAR-10 mosaics (``benchmarks/make_multilabel_cifar.py``; relevant =
  a shared class) with frozen features, a triplet head and 48-bit codes;
- **unseen classes**: CIFAR-10 on its standard protocol and with two classes held out of
  training (``unseen:2``), the same three plus the classifier-output codes of a softmax
  model (Sablayrolles et al. 2017, :mod:`deephash.metrics.classifier_codes`), which read
  the classes the classifier knows and so should win on the first and lose on the second.

Each table has a *random ranking* row (:func:`chance_figures`): the expected figures of a
ranking that knows nothing, the floor every method is read against (on ``unseen:2`` a
query's class is half the database). :func:`multilabel_table` and :func:`unseen_table`
render the Markdown that the benchmark stores under ``tables`` in
``benchmarks/results/multilabel.json``, where the README's generated blocks read it
(``<!-- generated: benchmarks/results/multilabel.json table multilabel -->``,
:mod:`deephash.reporting.readme`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import DataError
from deephash.labels import as_label_set, relevance
from deephash.metrics.hamming import tie_aware_average_precision, tie_aware_precision_at
from deephash.reporting.runs import read_run

MAP_K, P_K = 1000, 10
#: the figures of a table row: name in the run's metrics.json -> column heading
FIGURES = {"map@all": "mAP@all", "map@all_index_order": "mAP@all, ties by index",
           f"map@{MAP_K}": f"mAP@{MAP_K}", f"p@{P_K}": f"P@{P_K}"}
METHODS = {"frozen": "frozen features", "triplet": "triplet head", "codes": "48-bit codes",
           "classifier": "classifier codes"}
CHANCE = "random ranking"
CLASSIFIER_PREFIX = "classifier_codes_"
CHUNK = 512


def run_figures(folder: Path, method: str) -> dict[str, Any]:
    """The table figures of the finished run in ``folder`` (a ``hash`` run's ``bits-K``):
    ``method`` is a key of :data:`METHODS`; ``classifier`` reads the run's classifier-code
    figures (``classifier_codes_*`` of a softmax run)."""
    record = read_run(folder)
    if record is None:
        raise DataError(f"{folder} is not a finished run folder (no metrics.json)")
    metrics = record.metrics
    prefix = CLASSIFIER_PREFIX if method == "classifier" else ""
    if f"{prefix}map@all" not in metrics:
        raise DataError(f"{folder}/metrics.json has no {prefix}map@all"
                        + ("; classifier codes come from a softmax run on single-label data"
                           if prefix else ""))
    if prefix:
        representation = f"{metrics[prefix + 'bits']} bits (a class id)"
    elif record.kind == "codes":
        representation = f"{metrics['bits']} bits"
    else:
        representation = f"{saved_width(folder)}-d float"
    seconds = record.info.get("seconds")
    return {"method": method, "folder": str(folder), "title": record.title,
            "representation": representation,
            "protocol": metrics.get("protocol"), "n_query": metrics.get("n_query"),
            "n_database": metrics.get("n_database"),
            "seconds": seconds.get("total") if isinstance(seconds, dict) else None,
            **{key: metrics.get(prefix + key) for key in FIGURES}}


def saved_width(folder: Path) -> int:
    """Width D of the ``(Q, D)`` query embeddings a run saved, read from the array header
    alone."""
    path = folder / "embeddings" / "query.npz"
    try:
        with zipfile.ZipFile(path) as archive, archive.open("x.npy") as handle:
            version = np.lib.format.read_magic(handle)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, _ = header(handle)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        raise DataError(f"{path} is missing or holds no embeddings 'x'") from None
    return int(shape[1])


def chance_figures(folder: Path) -> dict[str, Any]:
    """Expected figures of a random ranking on the protocol of the run in ``folder``, from
    the labels it saved (``embeddings/`` or ``codes/``): every database item tied, so the
    tie-aware closed forms of :mod:`deephash.metrics.hamming` give the expectation over all
    orders. Queries and database must be disjoint (the test protocols are)."""
    sides = {}
    for name in ("query", "database"):
        path = next((folder / kind / f"{name}.npz" for kind in ("embeddings", "codes")
                     if (folder / kind / f"{name}.npz").is_file()), None)
        if path is None:
            raise DataError(f"{folder} saved no {name} vectors (embeddings/ or codes/)")
        with np.load(path) as saved:
            sides[name] = (as_label_set(saved["y"]), saved["index"])
    (yq, query_index), (yd, database_index) = sides["query"], sides["database"]
    if np.intersect1d(query_index, database_index).size:
        raise DataError(f"{folder}: queries and database overlap; give a test protocol run")
    hits = np.concatenate([relevance(yq[start:start + CHUNK], yd).sum(axis=1)
                           for start in range(0, len(yq), CHUNK)])[:, None]
    counts = np.full_like(hits, len(yd))
    return {"method": "chance", "title": CHANCE, "representation": "",
            "n_query": len(yq), "n_database": len(yd),
            "map@all": float(tie_aware_average_precision(counts, hits).mean()),
            "map@all_index_order": None,
            f"map@{MAP_K}": float(tie_aware_average_precision(counts, hits, MAP_K).mean()),
            f"p@{P_K}": float(tie_aware_precision_at(counts, hits, P_K).mean())}


def _cell(value: float | None, best: bool) -> str:
    if value is None:
        return "—"
    return f"**{value:.4f}**" if best else f"{value:.4f}"


def _best(rows: list[Mapping[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return max(values) if values else None


def _cells(row: Mapping[str, Any], keys: list[str], others: list[Mapping[str, Any]]) -> list[str]:
    """``row``'s figures; the best of ``others`` (the methods) in bold, chance never."""
    return [_cell(row.get(key), row.get("method") != "chance"
                  and row.get(key) is not None and row.get(key) == _best(others, key))
            for key in keys]


def _label(row: Mapping[str, Any]) -> str:
    return CHANCE if row["method"] == "chance" else METHODS[row["method"]]


def multilabel_table(runs: Mapping[str, Mapping[str, Any]], chance: Mapping[str, Any]) -> str:
    """Markdown: one row per method of ``runs`` (method -> :func:`run_figures`), then
    the random ranking; a note on sizes and ties below."""
    methods = list(runs.values())
    keys = list(FIGURES)
    lines = [f"| method | representation | {' | '.join(FIGURES.values())} |",
             "|---|---|" + "---|" * len(keys)]
    for row in [*methods, chance]:
        lines.append(f"| {_label(row)} | {row['representation']} | "
                     f"{' | '.join(_cells(row, keys, methods))} |")
    sizes = f"{chance['n_query']:,} query mosaics against {chance['n_database']:,}"
    return ("\n".join(lines) + f"\n\n{sizes}; relevant = at least one class in common. "
            "Float embeddings have no ties to break (—: their mAP@all is exact); the random "
            "ranking's figures are expectations.\n")


def unseen_table(legs: Mapping[str, Mapping[str, Mapping[str, Any]]],
                 chance: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per method, one group of columns (mAP@all, mAP@k, P@k) per
    protocol of ``legs`` (protocol -> method -> :func:`run_figures`), the random ranking
    last; the protocols' sizes below."""
    keys = ["map@all", f"map@{MAP_K}", f"p@{P_K}"]
    names = list(legs)
    methods = list(dict.fromkeys(method for leg in legs.values() for method in leg))
    header = [f"{name} {FIGURES[key]}" for name in names for key in keys]
    lines = [f"| method | representation | {' | '.join(header)} |",
             "|---|---|" + "---|" * len(header)]
    for method in [*methods, "chance"]:
        cells: list[str] = []
        representation = ""
        for name in names:
            row = chance[name] if method == "chance" else legs[name].get(method)
            if row is None:
                cells.extend("—" for _ in keys)
                continue
            representation = representation or row["representation"]
            cells.extend(_cells(row, keys, list(legs[name].values())))
        lines.append(f"| {_label({'method': method})} | {representation} | "
                     f"{' | '.join(cells)} |")
    sizes = "; ".join(f"{name}: {chance[name]['n_query']:,} queries against "
                      f"{chance[name]['n_database']:,}" for name in names)
    return "\n".join(lines) + f"\n\n{sizes}. Tie-aware figures for codes.\n"
