"""``deephash study``: stages from one YAML, reuse of finished stages, continuation after
kill -9, the report at the end; the shipped presets build and check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deephash.cli import main
from deephash.studies.study import Stage, build_stages, read_study, time_left
from deephash.studies.study_config import PRESETS, StudyConfig
from tests.conftest import make_image_folder

TINY = {
    "title": "tiny study",
    "base": {"backbone": {"image_size": 32}, "extraction": {"flip_views": True},
             "evaluation": {"tsne_points": 0},
             "training": {"epochs": 2, "batch_classes": 3, "batch_samples": 4,
                          "hidden_dims": [16], "embedding_dim": 8}},
    "stages": [
        {"name": "baseline", "command": "baseline"},
        {"name": "losses", "command": "loss-study",
         "options": {"losses": ["facenet"], "margins": [0.1, 0.3]}},
        {"name": "codes", "command": "hash", "options": {"hashing": {"bits": [8]}}},
    ],
}
RESULTS = ("baseline", "losses/facenet", "codes/bits-8")


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("study")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return {"root": root, "data": make_image_folder(root / "data", n_classes=3, n_train=12,
                                                    n_test=4), "study": root / "tiny.yaml"}


def study_args(setting: dict[str, Path], out: Path) -> list[str]:
    return ["study", "--file", str(setting["study"]), "--data-dir", str(setting["data"]),
            "--cache-dir", str(setting["root"] / "cache"), "--out", str(out)]


def figures(out: Path) -> dict[str, float]:
    return {name: json.loads((out / name / "metrics.json").read_text())["map@all"]
            for name in RESULTS}


@pytest.fixture(scope="module")
def finished(setting: dict[str, Path]) -> Path:
    out = setting["root"] / "straight"
    assert main(study_args(setting, out)) == 0
    return out


def test_a_study_runs_every_stage_and_reports_them(finished: Path) -> None:
    record = json.loads((finished / "study.json").read_text())
    assert [(s["name"], s["state"]) for s in record["stages"]] == [
        ("baseline", "ran"), ("losses", "ran"), ("codes", "ran")]
    assert all(0 <= v <= 1 for v in figures(finished).values())
    page = (finished / "report.html").read_text()
    for name in RESULTS:
        assert f">{name}</a>" in page  # a summary row per result
    assert (finished / "report.md").is_file() and (finished / "study.yaml").is_file()


def test_a_finished_study_is_reused_not_rerun(setting: dict[str, Path], finished: Path) -> None:
    stamps = {name: (finished / name / "metrics.json").stat().st_mtime_ns for name in RESULTS}
    assert main(study_args(setting, finished)) == 0
    record = json.loads((finished / "study.json").read_text())
    assert [s["state"] for s in record["stages"]] == ["reused"] * 3
    assert {n: (finished / n / "metrics.json").stat().st_mtime_ns for n in RESULTS} == stamps


def test_a_killed_study_continues_where_it_stopped(setting: dict[str, Path],
                                                   finished: Path) -> None:
    """kill -9 once the loss stage has trained an epoch; the same command then reuses the
    baseline, continues the loss stage and ends with the uninterrupted study's figures."""
    out = setting["root"] / "killed"
    env = {**os.environ, "DEEPHASH_PROGRESS": "0"}
    process = subprocess.Popen([sys.executable, "-m", "deephash.cli", *study_args(setting, out)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((out / "losses").rglob("last.pt")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "codes").exists()
    killed = json.loads((out / "study.json").read_text())  # written as each stage starts
    assert [(s["name"], s["state"]) for s in killed["stages"]] == [("baseline", "ran"),
                                                                   ("losses", "running")]
    assert main(study_args(setting, out)) == 0
    record = json.loads((out / "study.json").read_text())
    assert [s["state"] for s in record["stages"]] == ["reused", "ran", "ran"]
    losses = record["stages"][1]  # keeps the killed stage's time until its last write
    assert 0 < losses["earlier_seconds"] <= losses["seconds"]
    assert "earlier_seconds" not in record["stages"][2]
    assert figures(out) == pytest.approx(figures(finished), abs=1e-6)


def test_presets_and_bad_studies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert set(PRESETS) >= {"quick", "full"}
    data = str(make_image_folder(tmp_path / "data"))
    for preset in PRESETS:  # every shipped preset builds and passes the checks
        config = StudyConfig(preset=preset, out=str(tmp_path / preset), data_dir=data)
        stages = build_stages(config, read_study(config))
        assert stages and all(s.config.out.startswith(str(tmp_path)) for s in stages)
    bad = tmp_path / "bad.yaml"
    for content, message in (
            ({"stages": []}, "needs a list of stages"),
            ({"stages": [{"name": "a", "command": "search"}]}, "is not one of"),
            ({"stages": [{"name": "a", "command": "train",
                          "options": {"training": {"epochs": 0}}}]}, "study stage 'a' (train)"),
            ({"stages": [{"name": "a", "command": "train"}, {"name": "a", "command": "hash"}]},
             "unique folder name"),
            ({"stages": [{"name": "a", "command": "train"}], "bsae": {}},
             "unknown key(s) bsae; known: title, base, stages"),
            ({"stages": [{"name": "a", "command": "train", "option": {}}]},
             "study stage 'a': unknown key(s) option; known: name, command, minutes, options"),
            ({"stages": [{"name": "a", "command": "train", "minutes": float("nan")}]},
             "minutes must be a finite number"),
            ({"stages": [{"name": "a", "command": "train",
                          "options": {"training": {"lr": float("inf")}}}]},
             "study stage 'a' (train): --lr (training.lr) must be a finite number, got inf"),
            ({"stages": [{"name": "a", "command": "train",
                          "options": {"training": {"epochs": 1.5}}}]},
             "training.epochs must be a whole number, got 1.5")):
        bad.write_text(yaml.safe_dump(content))
        assert main(["study", "--file", str(bad), "--data-dir", data, "--out",
                     str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_time_left_scales_the_expected_minutes_by_the_pace_so_far() -> None:
    stages = [Stage(name, "train", None, minutes) for name, minutes in
              (("a", 2.0), ("b", 4.0), ("c", 6.0))]
    assert time_left(stages, 0, 0.0, []) == "0 s elapsed, about 12 min left"
    # stage a (2 min expected) took 4 min: the rest (10 min expected) at half the pace
    assert time_left(stages, 1, 240.0, [2.0]) == "240 s elapsed, about 20 min left"
    # a reused stage costs nothing and does not count in the pace
    assert time_left(stages, 2, 60.0, [4.0]) == "60 s elapsed, about 2 min left"
