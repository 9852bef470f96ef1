"""``deephash study``: the whole study from one YAML, one run folder per stage, a report.

A study is a list of stages over one base configuration (composition: each stage is a
command -- ``baseline``, ``train``, ``select-margin``, ``loss-study``, ``miner-study``,
``hash``, ``schedule-study`` -- whose configuration is the base settings that apply to it,
then the stage's own ``options``, then the study's ``--data-dir``, ``--cache-dir`` and
``--device``). Every stage's configuration is built and checked before the first one runs.

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
                  "schedule-study")


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
    return data


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
        stages.append(Stage(name, command, stage_config, float(entry.get("minutes", 1))))
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


def run_study(config: StudyConfig) -> dict[str, Any]:
    """Run (or continue) the study into ``config.out``; returns ``study.json``."""
    validate(config)
    study = read_study(config)
    stages = build_stages(config, study)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.yaml").write_text(yaml.safe_dump(
        {"title": study.get("title", "deephash study"), "options": to_dict(config),
         "stages": [{"name": s.name, "command": s.command, "config": to_dict(s.config)}
                    for s in stages]}, sort_keys=False))
    record: dict[str, Any] = {"title": study.get("title", "deephash study"), "stages": []}
    bar = progress_bar(round(sum(s.minutes for s in stages) * 60), "study", unit="s")
    started = time.perf_counter()
    ran: list[float] = []  # expected minutes of the stages run so far (not reused)
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
            if state != "done":
                Lazy(COMMANDS[stage.command].function).resolve()(prepared(stage, state))
                ran.append(stage.minutes)
            record["stages"].append({"name": stage.name, "command": stage.command,
                                     "state": "reused" if state == "done" else "ran",
                                     "seconds": round(time.perf_counter() - clock, 1),
                                     **stage_load(Path(stage.config.out))})
            bar.update(round(stage.minutes * 60))
    finally:
        bar.close()
        record["seconds"] = round(time.perf_counter() - started, 1)
        save_json(out / "study.json", record)
    if config.report:
        from deephash.reporting import write_report

        write_report([out], out, str(record["title"]))
    log.info("study finished in %.0f s: %s", record["seconds"], out)
    return record
