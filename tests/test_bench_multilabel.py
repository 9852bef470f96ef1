"""Issue 21's measurements: the tables (deephash.reporting.multilabel), the random-ranking
floor against a brute force, and benchmarks/bench_multilabel.py end to end at toy sizes."""

from __future__ import annotations

import importlib
import itertools
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from conftest import make_image_folder

from deephash.errors import ConfigError, DataError
from deephash.labels import LabelSet, relevance
from deephash.metrics.retrieval import average_precision, hits_at
from deephash.pipeline.results import write_embeddings
from deephash.reporting.multilabel import (
    chance_figures,
    multilabel_table,
    run_figures,
    saved_width,
    unseen_table,
)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def figures(method: str, representation: str, values: tuple[float | None, ...],
            n_query: int = 10, n_database: int = 50) -> dict[str, Any]:
    keys = ("map@all", "map@all_index_order", "map@1000", "p@10")
    return {"method": method, "representation": representation, "n_query": n_query,
            "n_database": n_database, **dict(zip(keys, values, strict=True))}


def test_the_multilabel_table() -> None:
    runs = {"frozen": figures("frozen", "1280-d float", (0.5, None, 0.6, 0.7)),
            "codes": figures("codes", "48 bits", (0.55, 0.5, 0.58, 0.75))}
    chance = figures("chance", "", (0.3, None, 0.31, 0.32), 1000, 10000)
    assert multilabel_table(runs, chance) == (
        "| method | representation | mAP@all | mAP@all, ties by index | mAP@1000 | P@10 |\n"
        "|---|---|---|---|---|---|\n"
        "| frozen features | 1280-d float | 0.5000 | — | **0.6000** | 0.7000 |\n"
        "| 48-bit codes | 48 bits | **0.5500** | **0.5000** | 0.5800 | **0.7500** |\n"
        "| random ranking |  | 0.3000 | — | 0.3100 | 0.3200 |\n"
        "\n1,000 query mosaics against 10,000; relevant = at least one class in common. "
        "Float embeddings have no ties to break (—: their mAP@all is exact); the random "
        "ranking's figures are expectations.\n")


def test_the_unseen_classes_table_puts_the_protocols_side_by_side() -> None:
    legs = {"cifar10": {"frozen": figures("frozen", "1280-d float", (0.5, None, 0.6, 0.7)),
                        "classifier": figures("classifier", "4 bits (a class id)",
                                              (0.9, 0.9, 0.91, 0.92))},
            "unseen:2": {"frozen": figures("frozen", "1280-d float", (0.8, None, 0.85, 0.9)),
                         "classifier": figures("classifier", "4 bits (a class id)",
                                               (0.6, 0.6, 0.62, 0.64))}}
    chance = {"cifar10": figures("chance", "", (0.1, None, 0.1, 0.1), 10000, 50000),
              "unseen:2": figures("chance", "", (0.5, None, 0.5, 0.5), 2000, 10000)}
    assert unseen_table(legs, chance) == (
        "| method | representation | cifar10 mAP@all | cifar10 mAP@1000 | cifar10 P@10 | "
        "unseen:2 mAP@all | unseen:2 mAP@1000 | unseen:2 P@10 |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| frozen features | 1280-d float | 0.5000 | 0.6000 | 0.7000 | **0.8000** | **0.8500** "
        "| **0.9000** |\n"
        "| classifier codes | 4 bits (a class id) | **0.9000** | **0.9100** | **0.9200** | "
        "0.6000 | 0.6200 | 0.6400 |\n"
        "| random ranking |  | 0.1000 | 0.1000 | 0.1000 | 0.5000 | 0.5000 | 0.5000 |\n"
        "\ncifar10: 10,000 queries against 50,000; unseen:2: 2,000 queries against 10,000. "
        "Tie-aware figures for codes.\n")


@pytest.mark.parametrize("multi", [False, True])
def test_the_random_ranking_floor_against_every_order(tmp_path: Path, multi: bool) -> None:
    rng = np.random.default_rng(int(multi))
    if multi:
        yq = LabelSet.from_multi_hot(rng.random((4, 3)) < 0.4)
        yd = LabelSet.from_multi_hot(rng.random((6, 3)) < 0.4)
    else:
        yq, yd = LabelSet.from_ids(rng.integers(0, 3, 4)), LabelSet.from_ids(rng.integers(0, 3, 6))
    write_embeddings(tmp_path, "query", rng.random((4, 5)), yq, np.arange(4))
    write_embeddings(tmp_path, "database", rng.random((6, 5)), yd, np.arange(4, 10))
    got = chance_figures(tmp_path)
    ranks = [[np.flatnonzero(rel[list(order)]) + 1 for order in itertools.permutations(range(6))]
             for rel in relevance(yq, yd)]  # per query: every order of the database

    def mean_over(per_order: Any) -> float:
        return float(np.mean([np.mean([per_order(r) for r in query]) for query in ranks]))

    assert got["map@all"] == pytest.approx(mean_over(average_precision))
    assert got["map@1000"] == pytest.approx(got["map@all"])  # 1000 > 6 items
    assert got["p@10"] == pytest.approx(mean_over(lambda r: hits_at(r, np.array([10]))[0] / 6))
    assert (got["n_query"], got["n_database"], got["map@all_index_order"]) == (4, 6, None)
    assert saved_width(tmp_path) == 5


def test_the_floor_needs_disjoint_queries_and_a_finished_run(tmp_path: Path) -> None:
    write_embeddings(tmp_path, "query", np.zeros((2, 3)), [0, 1], np.array([0, 1]))
    with pytest.raises(DataError, match="saved no database vectors"):
        chance_figures(tmp_path)
    write_embeddings(tmp_path, "database", np.zeros((2, 3)), [0, 1], np.array([1, 2]))
    with pytest.raises(DataError, match="overlap"):
        chance_figures(tmp_path)
    with pytest.raises(DataError, match="not a finished run folder"):
        run_figures(tmp_path, "frozen")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The benchmark module, writing its results under ``tmp_path/results``."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    return importlib.import_module("bench_multilabel")


def toy_tree(tmp_path: Path) -> Path:
    """Four classes of 64 training and 10 test images: enough tiles for the toy mosaics."""
    return make_image_folder(tmp_path / "cifar", n_classes=4, n_train=64, n_test=10,
                             size=(32, 32))


def run_toy(bench: ModuleType, tmp_path: Path) -> dict[str, Any]:
    assert bench.main(["--quick", "--data", str(toy_tree(tmp_path)), "--mosaics",
                       str(tmp_path / "mosaics"), "--runs", str(tmp_path / "runs"),
                       "--cache-dir", str(tmp_path / "cache")]) == 0
    return json.loads((tmp_path / "results" / "multilabel-quick.json").read_text())


def check_result(result: dict[str, Any], tmp_path: Path) -> None:
    assert result["machine"]["cores"] >= 1
    assert set(result["runs"]) == {"multilabel", "cifar10", "unseen:2"}
    assert set(result["runs"]["multilabel"]) == {"frozen", "triplet", "codes"}
    for methods in result["runs"].values():
        for method, row in methods.items():
            metrics = json.loads((Path(row["folder"]) / "metrics.json").read_text())
            key = "classifier_codes_map@all" if method == "classifier" else "map@all"
            assert row["map@all"] == metrics[key]
    assert result["runs"]["cifar10"]["classifier"]["representation"] == "2 bits (a class id)"
    assert result["runs"]["cifar10"]["codes"]["representation"] == "48 bits"
    assert all(row["seconds"] > 0 for methods in result["runs"].values()
               for row in methods.values())
    for table in result["tables"].values():
        assert "| random ranking |" in table
    assert (tmp_path / "mosaics" / "mosaics.json").is_file()


def test_the_benchmark_end_to_end_at_toy_size(bench: ModuleType, tmp_path: Path) -> None:
    """The real settings (the mosaics as list files, unseen:2): stages, figures, floors,
    tables, results file."""
    result = run_toy(bench, tmp_path)
    check_result(result, tmp_path)
    assert result["runs"]["multilabel"]["codes"]["map@all_index_order"] is not None
    assert "query mosaics" in result["tables"]["multilabel"]


def test_refused_options_are_named_before_anything_runs(bench: ModuleType,
                                                        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deephash baseline .*--protocol no-such"):
        bench.check_command(["baseline", "--protocol", "no-such"])
    bench.check_command(["baseline", "--protocol", "cifar10"])
