"""The served-ranking measurement (``deephash.reporting.served``) on a synthetic code run:
each ranking against an independent evaluator, and the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deephash.errors import DataError
from deephash.fileio import save_npz
from deephash.hashing.codes import hamming_matrix
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.metrics.evaluate_codes import evaluate_codes
from deephash.reporting.gallery import code_ranker, saved_vectors
from deephash.reporting.runs import RunRecord, read_run
from deephash.reporting.served import list_metrics, measure_run, served_table

BITS = 8


def synthetic_run(folder: Path, relaxed_saved: bool = True, multi_label: bool = False) -> Path:
    """A 3-class, class-sorted database of 300 relaxed 8-bit codes and 40 queries: few
    distinct codes, so many ties; the relaxed outputs carry more than their signs. With
    ``multi_label`` about a third of the images also have a second label (a 4th class),
    saved as an ``(N, 4)`` bool multi-hot ``y`` as multi-label runs save it."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, BITS))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.sort(rng.integers(0, 3, n))
        return np.tanh(centres[y] + rng.normal(scale=1.2, size=(n, BITS))), y

    for name, n, start in (("query", 40, 0), ("database", 300, 40)):
        x, y = draw(n)
        labels: np.ndarray = y
        if multi_label:
            labels = np.zeros((n, 4), dtype=bool)
            labels[np.arange(n), y] = True
            labels[:, 3] = rng.random(n) < 0.35
        arrays = {"codes": np.packbits(x >= 0, axis=1), "y": labels, "bits": np.array(BITS),
                  "index": np.arange(start, start + n)}
        if relaxed_saved:
            arrays["relaxed"] = x.astype(np.float16)
        save_npz(folder / "codes" / f"{name}.npz", **arrays)
    (folder / "metrics.json").write_text(json.dumps({"bits": BITS, "protocol": "synthetic",
                                                     "distance": "hamming"}))
    (folder / "config.yaml").write_text("training:\n  distance: euclidean\n")
    return folder


def test_list_metrics_on_a_hand_built_list() -> None:
    relevant = np.array([[True, False, True, False, True]])
    top = np.array([[4, 1, 0, 3, 2]])  # relevant at ranks 1, 3, 5
    got = list_metrics(top, relevant, (2, 5), 3)
    assert got == pytest.approx({"p@2": 0.5, "p@5": 0.6, "map@3": (1 + 2 / 3) / 2})


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_each_ranking_matches_an_independent_evaluator(tmp_path: Path,
                                                       multi_label: bool) -> None:
    """Multi-label: relevance is a shared label, for the rankings as for the evaluators."""
    run = read_run(synthetic_run(tmp_path, multi_label=multi_label))
    assert run is not None
    result = measure_run(run)
    query = np.load(tmp_path / "codes" / "query.npz")
    database = np.load(tmp_path / "codes" / "database.npz")
    spec = EvaluationSpec(knn_k=(1,), map_cutoffs=(1000,), precision_k=(10, 100))
    codes = evaluate_codes(query["codes"], database["codes"], query["y"], database["y"], BITS,
                           spec, index_order=True).metrics
    rankings = result["rankings"]
    for key in ("p@10", "p@100", "map@1000"):
        assert rankings["tie-aware"][key] == pytest.approx(codes[key])
        assert rankings["index order"][key] == pytest.approx(codes[f"{key}_index_order"])
    relaxed = evaluate_retrieval(query["relaxed"].astype(np.float32),
                                 database["relaxed"].astype(np.float32), query["y"],
                                 database["y"], "euclidean", spec).metrics
    for key in ("p@10", "p@100", "map@1000"):
        assert rankings["float"][key] == pytest.approx(relaxed[key])
    hamming = hamming_matrix(query["codes"], database["codes"])
    tenth = np.sort(hamming, axis=1)[:, 9]
    tied = (hamming == tenth[:, None]).sum(axis=1)
    assert result["tied_at_10"]["median"] == np.median(tied) and np.median(tied) > 10
    # the class-sorted database punishes index order; served ranks by the outputs
    assert rankings["served"]["p@10"] > rankings["index order"]["p@10"]
    assert rankings["served"]["p@10"] >= rankings["tie-aware"]["p@10"]
    assert result["n_query"] == 40 and result["train_distance"] == "euclidean"
    if multi_label:  # the served list's P@10 by brute force: a shared label is relevant
        served = code_ranker_top(run)
        shared = (query["y"][:, None, :] & database["y"][served]).any(axis=2)
        assert rankings["served"]["p@10"] == pytest.approx(shared.mean())
        assert query["y"].ndim == 2 and shared.mean() > 0.6  # shared 4th labels add hits
    table = served_table({"synthetic": result})
    assert table.count("\n") == 2 + 5 and f"{rankings['served']['p@10']:.4f}" in table
    subset = measure_run(run, n_queries=10, seed=1)
    assert subset["n_query"] == 10 and subset == measure_run(run, n_queries=10, seed=1)


def code_ranker_top(run: RunRecord) -> np.ndarray:
    """``(Q, 10)`` database rows of the served ranking of the run's saved codes."""
    query, database = saved_vectors(run, "query"), saved_vectors(run, "database")
    assert query is not None and database is not None
    return code_ranker(run, database).rank(query["vectors"], 10, query["relaxed"]).positions


def test_a_run_without_relaxed_outputs_is_refused(tmp_path: Path) -> None:
    run = read_run(synthetic_run(tmp_path, relaxed_saved=False))
    assert run is not None
    with pytest.raises(DataError, match="has no relaxed outputs"):
        measure_run(run)
