"""One folder holds one run: refusals, --resume, --overwrite, run.json states, and
byte-identical metrics.json of seeded reruns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_run_args

from deephash.cli import main
from deephash.config import load_yaml
from deephash.errors import ConfigError
from deephash.studies.baseline_config import BaselineConfig
from deephash.studies.run_folder import open_run, sub_run_flags
from deephash.studies.schedule_study import ScheduleStudyConfig
from deephash.training.config import TrainConfig


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_json(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def finished_run(path: Path, config: object, extra_file: str = "metrics.json") -> Path:
    with open_run(path, config) as folder:
        (folder.path / extra_file).write_text("{}\n")
    return path


def train_config(out: Path, **training: object) -> TrainConfig:
    config = TrainConfig(out=str(out))
    return dataclasses.replace(config, training=dataclasses.replace(config.training, **training))


# ---------------------------------------------------------------- states in run.json


@pytest.mark.parametrize("exists", [False, True])
def test_a_new_or_empty_folder_runs_then_finishes(tmp_path: Path, exists: bool) -> None:
    out = tmp_path / "run"
    if exists:
        out.mkdir()
    with open_run(out, train_config(out)) as folder:
        assert run_json(out)["state"] == "running"
        assert load_yaml(TrainConfig, out / "config.yaml") == train_config(out)
        folder.seconds["train"] = 1.5
        folder.device = "cpu"
    info = run_json(out)
    assert info["state"] == "finished" and "error" not in info and info["device"] == "cpu"
    assert info["seconds"]["train"] == 1.5 and info["seconds"]["total"] >= 0
    assert info["started"] <= info["ended"] and info["resumed"] is False


@pytest.mark.parametrize(("error", "message"), [
    (ConfigError("class 'cat' has 1 image; use another protocol\n(details)"),
     "class 'cat' has 1 image; use another protocol"),
    (KeyboardInterrupt(), "interrupted (KeyboardInterrupt)"),
    (ValueError("bad shape"), "ValueError: bad shape"),
])
def test_a_failing_run_is_marked_failed_with_one_line(tmp_path: Path, error: BaseException,
                                                      message: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(type(error)), open_run(out, train_config(out)):
        raise error
    info = run_json(out)
    assert info["state"] == "failed" and info["error"] == message


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(("resume", "flags"), [(False, ("--resume", "--overwrite")),
                                               (None, ("--overwrite",))])
def test_a_non_empty_folder_is_refused_and_left_untouched(tmp_path: Path, resume: bool | None,
                                                          flags: tuple[str, ...]) -> None:
    out = finished_run(tmp_path / "run", train_config(tmp_path / "run"))
    before = snapshot(out)
    with pytest.raises(ConfigError, match="already holds a finished run") as caught:
        open_run(out, train_config(out, margin=0.4), resume=resume)
    message = str(caught.value)
    assert "\n" not in message and str(out) in message
    assert [flag for flag in ("--resume", "--overwrite") if flag in message] == list(flags)
    assert snapshot(out) == before


def test_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ConfigError, match="already holds other files"):
        open_run(out, BaselineConfig(out=str(out)))
    with pytest.raises(ConfigError, match="is a file"):
        open_run(out / "cat.jpg", BaselineConfig())
    with pytest.raises(ConfigError, match="give one of them"):
        open_run(tmp_path / "new", BaselineConfig(), resume=True, overwrite=True)


# ---------------------------------------------------------------- --resume


def test_resume_needs_the_same_configuration(tmp_path: Path) -> None:
    out = finished_run(tmp_path / "run", train_config(tmp_path / "run"))
    before = snapshot(out)
    with pytest.raises(ConfigError, match=r"another configuration \(seed 0 -> 3, "
                                          r"training.margin 0.2 -> 0.4\)"):
        open_run(out, dataclasses.replace(train_config(out, margin=0.4), seed=3), resume=True)
    baseline = finished_run(tmp_path / "b", BaselineConfig())  # a baseline is no train run
    with pytest.raises(ConfigError, match=r"\(training\.\w+ \(absent\) -> "):
        open_run(baseline, train_config(out), resume=True)
    assert snapshot(out) == before
    # out, the run-control flags, the epoch budget and how extraction runs may differ:
    # train longer, elsewhere, on another device with more workers
    moved = dataclasses.replace(train_config(tmp_path / "moved", epochs=30, resume=True),
                                overwrite=True)
    moved = dataclasses.replace(moved, extraction=dataclasses.replace(
        moved.extraction, device="cuda", num_workers=8, cache_dir=str(tmp_path / "c2")))
    with open_run(out, moved, resume=True):
        assert run_json(out)["resumed"] is True
    assert (out / "metrics.json").is_file()  # --resume keeps what the run wrote


def test_a_field_added_after_the_run_was_saved_reads_as_its_default(tmp_path: Path) -> None:
    out = finished_run(tmp_path / "run", train_config(tmp_path / "run"))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["extraction"]["precision"]  # a run saved before --precision existed
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    with open_run(out, train_config(out, resume=True), resume=True):
        pass
    later = train_config(out, resume=True)
    later = dataclasses.replace(later, extraction=dataclasses.replace(later.extraction,
                                                                      precision="bf16"))
    with pytest.raises(ConfigError, match=r"extraction.precision \"fp32\" -> \"bf16\""):
        open_run(out, later, resume=True)


def test_a_resumed_study_may_extend_its_sweep_only(tmp_path: Path) -> None:
    config = ScheduleStudyConfig(out=str(tmp_path / "study"))
    out = finished_run(tmp_path / "study", config)
    more_seeds = dataclasses.replace(config, seeds=(0, 1))
    with pytest.raises(ConfigError, match=r"seeds \[0\] -> \[0, 1\]"):
        open_run(out, more_seeds, resume=True)
    with open_run(out, more_seeds, resume=True, sweep=("seeds",)):
        pass
    assert load_yaml(ScheduleStudyConfig, out / "config.yaml").seeds == (0, 1)


def test_saved_config_never_resumes_or_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = dataclasses.replace(train_config(out, resume=True), overwrite=True)
    with open_run(out, config, overwrite=True):
        pass
    saved = load_yaml(TrainConfig, out / "config.yaml")
    assert saved.overwrite is False and saved.training.resume is False
    assert saved == dataclasses.replace(config, overwrite=False,
                                        training=dataclasses.replace(config.training,
                                                                     resume=False))


# ---------------------------------------------------------------- --overwrite


def test_overwrite_clears_a_run_folder(tmp_path: Path) -> None:
    out = finished_run(tmp_path / "run", train_config(tmp_path / "run"), "best.pt")
    (out / "bits-12").mkdir()
    (out / "bits-12" / "history.json").write_text("[]")
    folder = open_run(out, BaselineConfig(out=str(out)), overwrite=True)
    assert (out / "best.pt").is_file()  # nothing is cleared before the run starts
    with folder:
        assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "run.json"]
    assert run_json(out)["state"] == "finished"


def test_overwrite_refuses_what_is_not_a_run_folder(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    (home / "config.yaml").write_text("editor: vim\n")  # a config.yaml, but not ours
    before = snapshot(home)
    with pytest.raises(ConfigError, match="is not a deephash run folder"):
        open_run(home, BaselineConfig(), overwrite=True)
    run = finished_run(tmp_path / "run", train_config(tmp_path / "run"))
    data = run / "data"
    data.mkdir()
    with pytest.raises(ConfigError, match="holds the data"):
        open_run(run, dataclasses.replace(BaselineConfig(), data=dataclasses.replace(
            BaselineConfig().data, data_dir=str(data))), overwrite=True)
    monkeypatch.chdir(data)
    with pytest.raises(ConfigError, match="holds the working directory"):
        open_run(run, BaselineConfig(), overwrite=True)
    assert snapshot(home) == before and (run / "metrics.json").is_file()


def test_sub_runs_of_a_resumed_study(tmp_path: Path) -> None:
    started, stopped, new = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    finished_run(started, train_config(started), "last.pt")
    finished_run(stopped, train_config(stopped))
    assert sub_run_flags(True, started) == (True, False)  # continue from last.pt
    assert sub_run_flags(True, stopped) == (False, True)  # stopped before an epoch: redo
    assert sub_run_flags(True, new) == (False, False)
    assert sub_run_flags(False, started) == (False, False)


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("command", ["baseline", "train"])
def test_seeded_reruns_write_byte_identical_metrics(folder: Path, tmp_path: Path,
                                                    command: str) -> None:
    args = tiny_run_args(folder, tmp_path / "cache")
    if command == "baseline":
        args = args[:args.index("--batch-classes")]  # the extraction and evaluation options
    args = [*args, "--seed", "3"]
    outputs = [tmp_path / "first", tmp_path / "second"]
    for out in outputs:
        assert main([command, "--out", str(out), *args]) == 0
    files = ["metrics.json", "splits.json"] + (["validation.json"] if command == "train" else [])
    for name in files:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
        assert "seconds" not in (outputs[0] / name).read_text()
    seconds = run_json(outputs[0])["seconds"]
    assert seconds["total"] > 0 and ("train" in seconds) == (command == "train")


def test_baseline_into_a_train_folder_is_refused_until_overwrite(
        folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = tiny_run_args(folder, tmp_path / "cache", epochs=1)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *args]) == 0
    before = snapshot(run)
    baseline = ["baseline", "--out", str(run), *args[:args.index("--batch-classes")]]
    assert main(baseline) == 2
    assert "already holds a finished run; replace it with --overwrite" in capsys.readouterr().err
    assert main(["train", "--out", str(run), *args, "--margin", "0.4", "--resume"]) == 2
    assert "training.margin 0.2 -> 0.4" in capsys.readouterr().err
    assert main(["train", "--config", str(run / "config.yaml")]) == 2  # never overwrites
    assert snapshot(run) == before
    assert main([*baseline, "--overwrite"]) == 0
    for stale in ("best.pt", "last.pt", "history.json", "curves.png", "validation.json"):
        assert not (run / stale).exists(), stale
    assert run_json(run)["state"] == "finished"
    assert "overwrite: false" in (run / "config.yaml").read_text()


def test_an_interrupted_train_is_marked_failed(folder: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import deephash.studies.train as train_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "fit_steps", interrupted)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *tiny_run_args(folder, tmp_path / "c")]) == 130
    info = run_json(run)
    assert info["state"] == "failed" and info["error"] == "interrupted (KeyboardInterrupt)"


def test_a_run_with_bad_inputs_writes_nothing(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = tiny_run_args(folder, tmp_path / "c")
    assert main(["train", "--out", str(run), *args, "--batch-classes", "1"]) == 2
    assert main(["train", "--out", str(run), *args, "--data-dir", str(tmp_path / "none")]) == 2
    assert not run.exists()
