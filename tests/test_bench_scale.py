"""Issue 24's benchmark: the goal verdicts of benchmarks/bench_scale.py, and the committed
results' tables (the README's goals, docs/scale.md's tables) as rendered from their own
measurements."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("bench_scale")


def served(p50_ms: float, recall: float | None = None, nprobe: int | None = None,
           append_s: float | None = None) -> dict[str, Any]:
    """One index entry of the results as bench_scale writes it."""
    entry: dict[str, Any] = {
        "index_s": 1.0, "write_s": 2.0, "folder_mb": 10.0, "rss_mb": 100,
        "sequential": {"p50_ms": p50_ms, "p99_ms": 2 * p50_ms},
        "concurrent": {"p50_ms": 8 * p50_ms, "p99_ms": 16 * p50_ms}}
    if recall is not None:
        entry["recall_at_10"] = recall
    if nprobe is not None:
        entry["nprobe"] = nprobe
    if append_s is not None:
        entry["appends_library"] = {"append_s": [2 * append_s, append_s, append_s],
                                    "median_append_s": append_s}
        entry["appends_served"] = {"median_post_s": 3.0,
                                   "searches_meanwhile": {"p50_ms": 1.0, "p99_ms": 2.0}}
    return entry


def test_goals_are_met_strictly_below_and_recall_at_or_above(bench: ModuleType) -> None:
    ten_million = bench.SIZES["10M"]
    assert bench.verdicts("codes", ten_million, "BFlat", served(49.9)) == ["p50 < 50 ms: met"]
    assert bench.verdicts("codes", ten_million, "BFlat", served(50.0)) == [
        "p50 < 50 ms: not met"]
    assert bench.verdicts("codes", ten_million, "BIVF1024", served(4.0, 0.95, 8)) == [
        "p50 < 5 ms: met", "recall >= 0.95: met"]
    assert bench.verdicts("codes", ten_million, "BIVF1024", served(4.0, 0.949, 8)) == [
        "p50 < 5 ms: met", "recall >= 0.95: not met"]
    # an approximate index without a measured recall never meets the recall goal
    assert bench.verdicts("codes", ten_million, "BIVF1024", served(4.0))[1].endswith("not met")
    # no goal at 1M codes, nor for exact floats
    assert bench.verdicts("codes", bench.SIZES["1M"], "BFlat", served(500.0)) == []
    assert bench.verdicts("floats", bench.SIZES["1M"], "Flat", served(500.0)) == []
    assert bench.verdicts("floats", bench.SIZES["1M"], "IVF1024,Flat", served(6.0, 0.99, 1)) == [
        "p50 < 5 ms: not met", "recall >= 0.95: met"]


def test_the_readme_goals_list_every_goal_and_the_appends(bench: ModuleType) -> None:
    collections = {
        "codes-synthetic-10M": {"n": bench.SIZES["10M"], "kind": "codes", "indexes": {
            "BFlat": served(30.0, append_s=1.5), "BIVF1024": served(4.0, 0.96, 8)}},
        "codes-synthetic-1M": {"n": bench.SIZES["1M"], "kind": "codes", "indexes": {
            "BFlat": served(7.0)}}}
    text = bench.tables(collections, "A CPU, 2 cores")["goals"]
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines == [
        "- codes-synthetic-10M, `BFlat`: 30.0 ms p50 (p50 < 50 ms: met)",
        "- codes-synthetic-10M, `BIVF1024 (nprobe 8)`: 4.0 ms p50 at recall@10 0.960 "
        "(p50 < 5 ms: met; recall >= 0.95: met)",
        "- codes-synthetic-10M, `BFlat`: an append of 1,000 items in 1.50 s (median of 3; the "
        "first after the load 3.00 s) while 8 clients search (< 1 s: not met)"]
    assert "A CPU, 2 cores" in text


def test_the_committed_tables_are_rendered_from_the_committed_measurements(
        bench: ModuleType) -> None:
    """No figure in the README or docs/scale.md was edited by hand: `--retable` rewrites
    exactly what is committed."""
    saved = json.loads((BENCHMARKS / "results" / "scale.json").read_text())
    machine = saved["machine"]
    cpu = f"{machine.get('cpu', 'CPU')}, {machine.get('cores', '?')} cores"
    assert bench.tables(saved["collections"], cpu) == saved["tables"]
    assert "Xeon" in cpu or "EPYC" in cpu
