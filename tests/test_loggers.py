"""Experiment logs (``deephash.training.loggers``): ``history.csv`` always, TensorBoard and
MLflow with ``--log``; each read back and compared with ``history.json``, after a run and
after a resumed one."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_run_args

from deephash.cli import main
from deephash.training.config import TrainConfig
from deephash.training.epochs import EpochRecord
from deephash.training.loggers import COLUMNS, open_run_log
from deephash.training.mlflow_logger import metric_key


def train(data: Path, run: Path, cache: Path, epochs: int, *extra: str) -> None:
    """A tiny ``deephash train`` that validates every second epoch (and after the last), so
    that the history has NaN validation figures."""
    assert main(["train", "--out", str(run), *tiny_run_args(data, cache, epochs=epochs),
                 "--validate-every", "2", *extra]) == 0


def history(run: Path) -> list[dict[str, Any]]:
    return json.loads((run / "history.json").read_text())


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def assert_csv_is_history(run: Path) -> None:
    """``history.csv`` holds ``history.json``: the same columns in order, one row per epoch,
    each number the same (written as Python writes it), NaN as an empty cell."""
    header, rows = read_csv(run / "history.csv")
    expected = history(run)
    assert header == list(COLUMNS) == list(expected[0])
    assert len(rows) == len(expected)
    for row, entry in zip(rows, expected, strict=True):
        for key, value in entry.items():
            if isinstance(value, float) and math.isnan(value):
                assert row[key] == "", key
            else:
                assert type(value)(row[key]) == value, key


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``folder``: tag -> [(step, value)] in order."""
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator").EventAccumulator(
        str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def assert_events_are_history(run: Path) -> None:
    """Each field of ``history.json`` is a scalar with one event per epoch that has a
    finite value (float32, as TensorBoard keeps it); ``metrics/map@all`` is metrics.json's."""
    logged, expected = scalars(run / "tensorboard"), history(run)
    for key in COLUMNS[1:]:
        finite = [(h["epoch"], h[key]) for h in expected if math.isfinite(h[key])]
        assert [step for step, _ in logged.get(key, [])] == [step for step, _ in finite], key
        assert [value for _, value in logged.get(key, [])] == pytest.approx(
            [value for _, value in finite], rel=1e-6), key
    metrics = json.loads((run / "metrics.json").read_text())
    assert logged["metrics/map@all"][-1] == (expected[-1]["epoch"],
                                             pytest.approx(metrics["map@all"], rel=1e-6))


def test_history_csv_and_tensorboard_equal_history_json_after_a_run_and_a_resumed_one(
        folder: Path, tmp_path: Path) -> None:
    """The CSV always; the TensorBoard events too where tensorboard is installed (the dev
    extra installs it): a new event file on resume, each epoch in it once."""
    board = importlib.util.find_spec("tensorboard") is not None
    log = ["--log", "tensorboard"] if board else []
    run = tmp_path / "run"
    train(folder, run, tmp_path / "cache", 2, *log)
    assert_csv_is_history(run)
    assert read_csv(run / "history.csv")[1][0]["val_map"] == ""  # the first: not validated
    if board:
        assert_events_are_history(run)
        assert [step for step, _ in scalars(run / "tensorboard")["val_map"]] == [1]  # no NaN
    train(folder, run, tmp_path / "cache", 3, *log, "--resume")
    assert [h["epoch"] for h in history(run)] == [0, 1, 2]
    assert_csv_is_history(run)  # rewritten from the whole history: no epoch twice
    if board:
        assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
        assert_events_are_history(run)  # epochs 0-2, each once


def test_a_resumed_history_older_than_a_field_gets_empty_cells(tmp_path: Path) -> None:
    """A resumed ``last.pt`` from before ``train_cpu_wait_seconds``: its epochs take the
    field's default, NaN, as ``history.json`` then does (an empty cell)."""
    old = {f: 0.5 for f in COLUMNS} | {"epoch": 0, "empty_batches": 1}
    del old["train_cpu_wait_seconds"]
    with open_run_log(TrainConfig(), tmp_path, [old]) as logs:
        logs.epoch(EpochRecord(**{**old, "epoch": 1, "loss": 0.25}))
    rows = read_csv(tmp_path / "history.csv")[1]
    assert [(r["epoch"], r["loss"], r["empty_batches"], r["train_cpu_wait_seconds"])
            for r in rows] == [("0", "0.5", "1", ""), ("1", "0.25", "1", "")]
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_backend_whose_package_is_missing_is_refused_before_any_work(
        folder: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # import and find_spec see no package
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *tiny_run_args(folder, tmp_path / "cache"),
                 "--log", name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"deephash: error: --log {name} needs the {name} package, which is not "
                   f"installed: pip install 'deephash[{name}]'"]
    assert not run.exists() and not (tmp_path / "cache").exists()


def test_an_mlflow_uri_without_log_mlflow_is_refused(folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "run"),
                 *tiny_run_args(folder, tmp_path / "cache"), "--mlflow-uri",
                 str(tmp_path / "store")]) == 2
    assert "--mlflow-uri" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_mlflow_metric_names_are_valid() -> None:
    assert metric_key("metrics/map@all") == "metrics/map_at_all"
    assert metric_key("metrics/knn_acc@10") == "metrics/knn_acc_at_10"
    assert metric_key("loss") == "loss"


# ------------------------------------------------------------------------------ MLflow

def test_mlflow_runs_of_a_hash_sweep_read_back_after_a_run_and_after_a_resumed_one(
        folder: Path, tmp_path: Path) -> None:
    """``deephash hash --bits 8 16 --log mlflow``: one MLflow run per code length in its own
    store (``bits-K/mlruns``) with the configuration as parameters, each epoch's figures
    once (also after ``--resume`` trained more) and metrics.json's figures. TensorBoard,
    added on resume, first logs the earlier epochs."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "hash"
    args = ["hash", "--out", str(run), *tiny_run_args(folder, tmp_path / "cache", epochs=1),
            "--bits", "8", "16", "--log", "mlflow"]
    assert main(args) == 0
    ids = {bits: json.loads((run / f"bits-{bits}" / "mlflow_run.json").read_text())["run_id"]
           for bits in (8, 16)}
    args[args.index("--epochs") + 1] = "2"
    assert main([*args, "tensorboard", "--resume"]) == 0
    for bits in (8, 16):
        sub = run / f"bits-{bits}"
        saved = json.loads((sub / "mlflow_run.json").read_text())
        assert saved["run_id"] == ids[bits]  # continued, not a second run
        client = MlflowClient(tracking_uri=saved["tracking_uri"])
        assert saved["tracking_uri"] == (sub / "mlruns").resolve().as_uri()
        logged = client.get_run(saved["run_id"])
        assert logged.info.status == "FINISHED"
        assert logged.data.params["training.embedding_dim"] == str(bits)
        assert logged.data.params["training.loss"] == "dtsh"
        for key in COLUMNS[1:]:
            points = sorted((m.step, m.value) for m in client.get_metric_history(
                saved["run_id"], key))
            assert points == [(h["epoch"], pytest.approx(h[key])) for h in history(sub)
                              if math.isfinite(h[key])], key
        metrics = json.loads((sub / "metrics.json").read_text())
        assert logged.data.metrics["metrics/map_at_all"] == pytest.approx(metrics["map@all"])
        assert_csv_is_history(sub)
        assert_events_are_history(sub)


def test_a_shallow_method_logs_its_final_figures(folder: Path, tmp_path: Path) -> None:
    """``hash --method lsh`` trains no epochs: no history.csv, and TensorBoard gets
    metrics.json's figures at step 0."""
    pytest.importorskip("tensorboard")
    run = tmp_path / "lsh"
    assert main(["hash", "--out", str(run), *tiny_run_args(folder, tmp_path / "cache"),
                 "--method", "lsh", "--bits", "8", "--log", "tensorboard"]) == 0
    sub = run / "bits-8"
    metrics = json.loads((sub / "metrics.json").read_text())
    logged = scalars(sub / "tensorboard")
    assert logged["metrics/map@all"] == [(0, pytest.approx(metrics["map@all"], rel=1e-6))]
    assert "loss" not in logged and not (sub / "history.csv").exists()
