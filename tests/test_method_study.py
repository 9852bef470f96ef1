"""method-study end to end on a tiny image folder: selection on validation only, the
seeds' means and spreads, the yardstick row, resume, bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run_args

from deephash.cli import main
from deephash.studies.method_study import summarise
from deephash.training.methods import METHOD_GRIDS


def study_args(folder: Path, tmp_path: Path, run: Path, seeds: tuple[str, ...] = ("0", "1")
               ) -> list[str]:
    return ["method-study", "--out", str(run), "--methods", "csq", "itq", "--bits", "8", "12",
            "--selection-bits", "8", "--seeds", *seeds,
            *tiny_run_args(folder, tmp_path / "c", epochs=2)]


def test_method_study_selects_on_validation_and_averages_seeds(folder: Path,
                                                               tmp_path: Path) -> None:
    run = tmp_path / "methods"
    assert main(study_args(folder, tmp_path, run)) == 0
    record = json.loads((run / "methods.json").read_text())
    grid = METHOD_GRIDS["csq"]
    scored = record["selections"]["csq"]["grid"]
    assert [point["label"] for point in scored] == [grid.label(v) for v in grid.values]
    best = max(range(len(scored)), key=lambda i: (scored[i]["val_map@all"], -i))
    assert record["selections"]["csq"]["chosen"] == scored[best]["label"]
    for point in scored:  # selection runs never touch the test protocol
        sub = run / "csq" / "select" / point["label"]
        assert json.loads((sub / "validation.json").read_text())["val_map@all"] == \
            pytest.approx(point["val_map@all"])
        assert yaml.safe_load((sub / "config.yaml").read_text())["training"]["embedding_dim"] == 8
        assert not (sub / "metrics.json").exists()
    assert "itq" not in record["selections"]  # no grid: the paper's settings
    rows = {(row["method"], row["bits"]): row for row in record["rows"]}
    assert set(rows) >= {("csq", 8), ("csq", 12), ("itq", 8), ("itq", 12)}
    chosen = grid.values[best]
    for (method, bits), row in rows.items():
        if method == "classifier codes":
            continue
        maps = []
        for seed in (0, 1):
            sub = run / method / f"seed-{seed}" / f"bits-{bits}"
            metrics = json.loads((sub / "metrics.json").read_text())
            assert metrics["distance"] == "hamming"
            maps.append(metrics["map@all"])
            options = yaml.safe_load((sub / "config.yaml").read_text())["training"]
            if method == "csq":  # the chosen value serves every length and seed
                assert tuple(options["loss_options"]) == tuple(
                    grid.settings(chosen).get("loss_options", ()))
        assert [m["map@all"] for m in row["per_seed"]] == maps
        assert row["map@all"] == pytest.approx(sum(maps) / 2)
        assert row["map@all_spread"] == pytest.approx(max(maps) - min(maps))
        assert row["train_cpu_s"] >= 0
    yardstick = rows[("classifier codes", 2)]  # 3 classes: 2-bit class codes
    for seed, figures in zip((0, 1), yardstick["per_seed"], strict=True):
        metrics = json.loads((run / "classifier" / f"seed-{seed}" / "metrics.json").read_text())
        assert figures["map@all"] == metrics["classifier_codes_map@all"]
    table = (run / "methods.md").read_text()
    assert "| csq | 8 |" in table and "± " in table and "classifier codes" in table


def test_method_study_resumes_without_retraining(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "methods"
    args = study_args(folder, tmp_path, run, seeds=("0",))
    assert main(args) == 0
    checkpoint = run / "csq" / "seed-0" / "bits-12" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    before = json.loads((run / "methods.json").read_text())["rows"]
    assert main([*args, "--resume"]) == 0
    assert checkpoint.stat().st_mtime_ns == stamp  # finished: re-evaluated, not retrained
    after = json.loads((run / "methods.json").read_text())["rows"]
    assert [r["map@all"] for r in after] == pytest.approx([r["map@all"] for r in before])


@pytest.mark.parametrize("change", [["--bits"], ["--seeds"], ["--methods"],
                                    ["--methods", "csq", "csq"], ["--selection-bits", "0"]])
def test_method_study_refuses_bad_options(folder: Path, tmp_path: Path, change: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "methods"
    assert main([*study_args(folder, tmp_path, run), *change]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not run.exists()


def test_method_study_refuses_an_unknown_method(folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*study_args(folder, tmp_path, tmp_path / "m"), "--methods", "nope"])
    assert stop.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_summarise_means_spreads_and_missing_figures() -> None:
    per_seed = [{"map@all": 0.5, "train_cpu_s": 2.0, "load": None},
                {"map@all": 0.7, "train_cpu_s": 4.0, "load": {"over_cores": True}}]
    summary = summarise(per_seed, ("map@all", "prec@r2"))
    assert summary["map@all"] == pytest.approx(0.6)
    assert summary["map@all_spread"] == pytest.approx(0.2)
    assert summary["train_cpu_s"] == pytest.approx(3.0)
    assert "prec@r2" not in summary  # no seed has it: left out, not NaN
    assert summary["loads"] == [{"over_cores": True}]
    assert summary["train_wall"] is False


def test_train_time_is_cpu_seconds_else_marked_wall_clock(tmp_path: Path) -> None:
    """One rule for a finished run's training time (the method study's table and the
    margin selection's): CPU seconds; wall-clock, marked, for a run.json without them."""
    from deephash.studies.method_study import methods_table
    from deephash.studies.run_folder import train_time

    runs = {"cpu": {"seconds": {"train": 30.0}, "cpu_seconds": {"train": 50.0}},
            "old": {"seconds": {"train": 30.0}}, "none": {}}
    for name, info in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps(info))
    assert train_time(tmp_path / "cpu") == (50.0, False)
    assert train_time(tmp_path / "old") == (30.0, True)
    seconds, wall = train_time(tmp_path / "none")
    assert math.isnan(seconds) and wall
    per_seed = [{"map@all": 0.5, "train_cpu_s": 50.0, "train_wall": False, "load": None},
                {"map@all": 0.7, "train_cpu_s": 30.0, "train_wall": True, "load": None}]
    row = {"method": "dpsh", "bits": 48, "selected": "paper",
           **summarise(per_seed, ("map@all",))}
    assert row["train_wall"] is True
    assert methods_table([row], 2).splitlines()[2].endswith("| 40.0 (wall) |")


def test_readme_table_has_every_length_the_yardstick_and_published_figures() -> None:
    from deephash.reporting.methods import PUBLISHED, methods_readme_table

    def row(method: str, bits: int, value: float, spread: float) -> dict[str, object]:
        return {"method": method, "bits": bits, "selected": "m=0.1", "map@all": value,
                "map@all_spread": spread, "map@all_index_order": value - 0.01,
                "map@all_index_order_spread": 0.0, "train_cpu_s": 12.4}

    record = {"protocol": "dtsh-1", "seeds": [0, 1, 2], "bits": [16, 48],
              "rows": [row("orthohash", 16, 0.5, 0.02), row("orthohash", 48, 0.6, 0.04),
                       row("itq", 16, 0.2, 0.0),
                       {**row("classifier codes", 4, 0.55, 0.0), "selected": "—"}]}
    lines = methods_readme_table(record).splitlines()
    assert lines[0].startswith("| method | selected | 16 bits | 48 bits | 48 bits, ties by "
                               "index | train CPU s (48 bits) | published")
    assert lines[2] == ("| orthohash | m=0.1 | 0.500 ± 0.010 | 0.600 ± 0.020 | 0.590 ± 0.000 | "
                        f"12 | {PUBLISHED['dtsh-1']['orthohash'].cell()} |")
    assert lines[3] == "| itq | m=0.1 | 0.200 ± 0.000 | — | — | — | — |"  # no 48-bit run
    assert lines[4].startswith("| classifier codes (4 bits: the yardstick at every length) | "
                               "— | 0.550 ± 0.000 | 0.550 ± 0.000 |")
    assert "64 bits" in PUBLISHED["dtsh-1"]["orthohash"].cell()


def test_frozen_figures_are_computed_once_per_features_and_splits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from deephash.data import Splits
    from deephash.labels import as_label_set
    from deephash.studies import train
    from deephash.training.config import TrainConfig

    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(40, 6)).astype(np.float32))
    features = {"identity": np.load(tmp_path / "f.npy", mmap_mode="r")}
    labels = as_label_set(np.arange(40) % 4)
    pool = np.arange(40)
    splits = Splits("test", 0, train=pool[pool % 4 != 0], val=pool[pool % 4 == 0],
                    query=pool[:4], database=pool[4:])
    calls = []
    real = train.validation_scores

    def counted(*args: object) -> tuple[float, float]:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(train, "validation_scores", counted)
    monkeypatch.setattr(train, "_FROZEN_FIGURES", {})
    first = train.frozen_validation(TrainConfig(), features, labels, splits)
    assert train.frozen_validation(TrainConfig(), features, labels, splits) == first
    assert len(calls) == 1
    other = Splits("test", 0, train=pool[pool % 4 != 1], val=pool[pool % 4 == 1],
                   query=pool[:4], database=pool[4:])
    train.frozen_validation(TrainConfig(), features, labels, other)  # other splits
    train.frozen_validation(TrainConfig(), features, as_label_set(np.arange(40) % 3), splits)
    np.save(tmp_path / "f.npy", rng.normal(size=(40, 6)).astype(np.float32))  # rewritten
    train.frozen_validation(TrainConfig(), {"identity": np.load(tmp_path / "f.npy",
                                                                mmap_mode="r")}, labels, splits)
    train.frozen_validation(TrainConfig(), {"identity": np.asarray(features["identity"])},
                            labels, splits)  # not from a cache file: never remembered
    train.frozen_validation(TrainConfig(), {"identity": np.asarray(features["identity"])},
                            labels, splits)
    assert len(calls) == 6
