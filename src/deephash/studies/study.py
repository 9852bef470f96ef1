"""``deephash study``: the whole study from one YAML, one run folder per stage, a report.

A study is a list of stages over one base configuration (composition: each stage is a
command -- ``baseline``, ``train``, ``select-margin``, ``loss-study``, ``miner-study``,
``hash``, ``schedule-study``, ``method-study`` -- whose configuration is the base settings
that apply to it, then the stage's own ``options``, then the study's ``--data-dir``,
``--cache-dir`` and ``--device``). Every stage's configuration is built and checked before
the first one runs.

Stages run in order into ``OUT/<name>/``, all reading one feature cache. A stage whose
folder holds a finished run of the same configuration is reused, not rerun; one that
stopped (Ctrl-C, kill -9, a crash) is continued with ``--resume`` where the command has
it (every training command; its finished sub-runs are kept) and redone otherwise (the
baseline: seconds, from the cache); one whose configuration changed is redone. So after
an interruption the same command continues where it stopped. ``study.json`` records each
stage's state, wall-clock time and the machine's load while its runs trained (their
``run.json`` load summaries combined; the README's stage table marks a stage whose load
exceeded the cores); ``report.html`` and ``report.md`` cover every run of the study. One
progress bar follows the whole study (weighted by each stage's expected ``minutes``),
besides each stage's own bars.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deephash.commands import COMMANDS
from deephash.config import from_dict, overlay, to_dict
from deephash.errors import ConfigError
from deephash.fileio import save_json
from deephash.machine import combined_load
from deephash.progress import progress_bar
from deephash.registry import Lazy
from deephash.studies.run_folder import config_changes
from deephash.studies.study_config import PRESETS_DIR, StudyConfig
from deephash.validation import validate

log = logging.getLogger(__name__)

#: the commands a stage may run
STAGE_COMMANDS = ("baseline", "train", "select-margin", "loss-study", "miner-study", "hash",
                  "schedule-study", "method-study")
#: the keys of a study file, and of each of its stages
STUDY_KEYS = ("title", "base", "stages")
STAGE_KEYS = ("name", "command", "minutes", "options")


@dataclass(frozen=True)
class Stage:
    """One step of a study: a command and its configuration (``out`` in the study)."""

    name: str
    command: str
    config: Any
    minutes: float


def read_study(config: StudyConfig) -> dict[str, Any]:
    """The study's YAML (the preset, or ``config.file``) as a mapping."""
    path = Path(config.file) if config.file else PRESETS_DIR / f"{config.preset}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read study file {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"study file {path} is not valid YAML") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) \
            or not data["stages"]:
        raise ConfigError(f"study file {path} needs a list of stages (name, command, "
                          "options); see the shipped presets")
    _known_keys(data, STUDY_KEYS, f"study file {path}")
    return data


def _known_keys(mapping: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    """Refuse keys a study file does not read (a typo would silently change nothing)."""
    if unknown := sorted(str(key) for key in mapping if key not in known):
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(known)}")


def build_stages(config: StudyConfig, study: Mapping[str, Any]) -> list[Stage]:
    """Every stage's checked configuration (nothing runs before all are valid)."""
    base = study.get("base") or {}
    given = {"data": {"data_dir": config.data_dir}} if config.data_dir else {}
    given = overlay(given, {"extraction": {"device": config.device,
                                          **({"cache_dir": config.cache_dir}
                                             if config.cache_dir else {})}})
    stages: list[Stage] = []
    for number, entry in enumerate(study["stages"], start=1):
        if not isinstance(entry, Mapping) or "name" not in entry or "command" not in entry:
            raise ConfigError(f"study stage {number} needs a name and a command")
        name, command = str(entry["name"]), str(entry["command"])
        _known_keys(entry, STAGE_KEYS, f"study stage {name!r}")
        minutes = entry.get("minutes", 1)
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) \
                or not 0 <= minutes < math.inf:
            raise ConfigError(f"study stage {name!r}: minutes must be a finite number >= 0, "
                              f"got {minutes!r}")
        if command not in STAGE_COMMANDS:
            raise ConfigError(f"study stage {name!r}: command {command!r} is not one of "
                              f"{', '.join(STAGE_COMMANDS)}")
        if name in {s.name for s in stages} or "/" in name or name in ("", ".", ".."):
            raise ConfigError(f"study stage name {name!r} must be a unique folder name")
        cls = COMMANDS[command].config
        fields = {f.name for f in dataclasses.fields(cls)}
        settings = overlay({k: v for k, v in base.items() if k in fields},
                          entry.get("options") or {})
        settings = overlay(settings, {k: v for k, v in given.items() if k in fields})
        settings["out"] = str(Path(config.out) / name)
        try:
            stage_config: Any = from_dict(cls, settings)
            validate(stage_config)
        except ConfigError as exc:
            raise ConfigError(f"study stage {name!r} ({command}): {exc}") from None
        stages.append(Stage(name, command, stage_config, float(minutes)))
    return stages


def stage_state(stage: Stage) -> str:
    """``done`` (finished, same configuration), ``stopped`` (started, same configuration),
    ``changed`` (another configuration) or ``new``."""
    folder = Path(stage.config.out)
    if not folder.is_dir() or not any(folder.iterdir()):
        return "new"
    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        info = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return "changed"
    if not isinstance(saved, dict) or config_changes(saved, stage.config):
        return "changed"
    return "done" if isinstance(info, dict) and info.get("state") == "finished" else "stopped"


def prepared(stage: Stage, state: str) -> Any:
    """The stage's configuration for its state: continued (``--resume``) when it stopped
    and its command resumes, otherwise cleared (``--overwrite``) when it holds anything."""
    config = stage.config
    if state == "stopped" and hasattr(config, "training"):
        return dataclasses.replace(config, training=dataclasses.replace(config.training,
                                                                        resume=True))
    if state in ("stopped", "changed"):
        return dataclasses.replace(config, overwrite=True)
    return config


def time_left(stages: list[Stage], done: int, elapsed: float, ran: list[float]) -> str:
    """``"312 s elapsed, about 14 min left"``: the stages still to run at their expected
    ``minutes``, scaled by how the stages run so far compared with theirs."""
    expected = sum(s.minutes for s in stages[done:])
    pace = elapsed / (60 * sum(ran)) if sum(ran) > 0 and elapsed > 0 else 1.0
    return f"{elapsed:.0f} s elapsed, about {expected * pace:.0f} min left"


def stage_load(folder: Path) -> dict[str, Any]:
    """``{"load": ...}``: the load while the training runs in ``folder`` trained (the
    ``run.json`` summaries beside each ``history.json``, combined:
    :func:`deephash.machine.combined_load`), ``{}`` when none recorded one (a baseline
    trains nothing, a run from before deephash sampled the load)."""
    found = []
    for history in sorted(folder.rglob("history.json")):
        try:
            info = json.loads((history.parent / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("load"), dict):
            found.append(info["load"])
    load = combined_load(found)
    return {"load": load} if load is not None else {}


def _latest_write(folder: Path) -> float:
    """The latest modification time (seconds since the epoch) under ``folder``; 0 if none."""
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()] if folder.is_dir() \
        else []
    return max(times, default=0.0)


def earlier_seconds(previous: Mapping[str, Any], stage: Stage) -> float:
    """The seconds ``stage`` spent in earlier runs of the study that stopped during it, from
    their ``study.json`` (``previous``): a stage stopped by an error or Ctrl-C recorded its
    seconds; one killed (kill -9) recorded when it started, and ran at least until the last
    file written in its folder."""
    for entry in previous.get("stages") or []:
        if not isinstance(entry, dict) or entry.get("name") != stage.name:
            continue
        seconds = float(entry.get("seconds") or 0.0)
        if entry.get("state") == "running":  # killed: from its start to its last write
            started = float(entry.get("started") or 0.0)
            seconds += max(0.0, _latest_write(Path(stage.config.out)) - started) if started \
                else 0.0
        return seconds if entry.get("state") in ("running", "stopped") else 0.0
    return 0.0


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def run_study(config: StudyConfig) -> dict[str, Any]:
    """Run (or continue) the study into ``config.out``; returns ``study.json``, which is
    written when each stage starts (state ``running``) and ends, so a killed study leaves
    it behind and its continuation adds the killed stage's time so far."""
    validate(config)
    study = read_study(config)
    stages = build_stages(config, study)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.yaml").write_text(yaml.safe_dump(
        {"title": study.get("title", "deephash study"), "options": to_dict(config),
         "stages": [{"name": s.name, "command": s.command, "config": to_dict(s.config)}
                    for s in stages]}, sort_keys=False))
    previous = _read_record(out / "study.json")
    record: dict[str, Any] = {"title": study.get("title", "deephash study"), "stages": []}
    bar = progress_bar(round(sum(s.minutes for s in stages) * 60), "study", unit="s")
    started = time.perf_counter()
    ran: list[float] = []  # expected minutes of the stages run so far (not reused)
    entry: dict[str, Any] = {}
    clock = started
    try:
        for number, stage in enumerate(stages, start=1):
            state = stage_state(stage)
            elapsed = time.perf_counter() - started
            log.info("study: stage %d of %d, %s (%s): %s; %s", number, len(stages),
                     stage.name, stage.command, {"done": "finished before, reused",
                                                 "stopped": "continuing where it stopped",
                                                 "changed": "configuration changed, redoing",
                                                 "new": "running"}[state],
                     time_left(stages, number - 1, elapsed, ran))
            clock = time.perf_counter()
            entry = {"name": stage.name, "command": stage.command, "state": "reused"}
            if state != "done":
                before = earlier_seconds(previous, stage) if state == "stopped" else 0.0
                entry = {**entry, "state": "running", "started": time.time(), "seconds": before}
                if before:
                    entry["earlier_seconds"] = round(before, 1)
                record["stages"].append(entry)
                save_json(out / "study.json", record)
                Lazy(COMMANDS[stage.command].function).resolve()(prepared(stage, state))
                ran.append(stage.minutes)
                record["stages"].pop()
                entry = {key: value for key, value in entry.items() if key != "started"}
                entry["state"] = "ran"
            entry["seconds"] = round(entry.get("seconds", 0.0) + time.perf_counter() - clock, 1)
            entry.update(stage_load(Path(stage.config.out)))
            record["stages"].append(entry)
            save_json(out / "study.json", record)
            entry = {}
            bar.update(round(stage.minutes * 60))
    except BaseException:
        if entry.get("state") == "running":  # stopped by an error or Ctrl-C: its time so far
            entry.pop("started", None)
            entry.update(state="stopped", seconds=round(
                entry["seconds"] + time.perf_counter() - clock, 1))
        raise
    finally:
        bar.close()
        record["seconds"] = round(time.perf_counter() - started, 1)
        save_json(out / "study.json", record)
    if config.report:
        from deephash.reporting import write_report

        write_report([out], out, str(record["title"]))
    log.info("study finished in %.0f s: %s", record["seconds"], out)
    return record
