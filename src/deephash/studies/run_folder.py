"""The run-folder layout shared by every study, and the rule that one folder holds one run.

    RUN_DIR/config.yaml        the exact configuration (reload with --config); the run-control
                               flags (--resume, --overwrite) are always saved as false
    RUN_DIR/run.json           state (running, failed with its error, finished), start and end,
                               command line, versions, git commit, device, every
                               wall-clock figure of the run ("seconds"), its CPU-time
                               figures ("cpu_seconds") and the machine's load while it
                               trained ("load": mean and max of the 1-minute load average
                               against the usable cores, "over_cores")
    RUN_DIR/splits.json        the protocol's pool indices
    RUN_DIR/metrics.json       flat test metrics (numbers in [0, 1]) + the distance used
    RUN_DIR/pr_curve.json/png  mean precision-recall curve of the test protocol
    RUN_DIR/tsne.png           t-SNE of a stratified sample of the query embeddings
    RUN_DIR/embeddings/{query,database}.npz   arrays x (float32), y (int64), index (int64)
    RUN_DIR/history.csv        a trained run's history.json as CSV, one row per epoch; with
                               --log, tensorboard/, mlruns/ and mlflow_run.json (the MLflow
                               run's id) beside it (deephash.training.loggers)

Times and loads live only in ``run.json`` and in ``history.json`` (a per-epoch log, which
keeps each epoch's seconds on both clocks and its load sample; ``history.csv`` and the
``--log`` backends copy it); every other JSON file but ``mlflow_run.json``
(``metrics.json``, ``validation.json``, ``splits.json``, a study's tables) depends on
the configuration alone, so a seeded rerun writes the same bytes.

One folder holds one run. :func:`open_run` refuses a non-empty ``--out`` unless
``--resume`` (the saved configuration must match) or ``--overwrite`` (the folder is cleared
first, and only if it is a deephash run folder that holds neither the working directory nor
the data). A study keeps its sub-runs in subfolders (``bits-12/``, ``margin-0.2/``), each
opened the same way once the study's own folder is; :func:`sub_run_flags` says how a
resumed study continues them.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import yaml

import deephash
from deephash.config import flatten, to_dict
from deephash.distributed import ranks
from deephash.errors import ConfigError, DeephashError
from deephash.fileio import save_bytes, save_json
from deephash.folders import check_clearable, is_run_folder, protected_folders, read_parsed
from deephash.machine import describe_machine
from deephash.pipeline.protocol import write_splits as write_splits  # moved there
from deephash.pipeline.results import write_embeddings as write_embeddings  # moved there

log = logging.getLogger(__name__)

#: run-control fields: saved as false, never compared when a run is resumed
RUN_FLAGS: tuple[tuple[str, ...], ...] = (("overwrite",), ("training", "resume"))
#: fields a resumed run may change besides a study's sweep: it may train longer
EXTENDABLE = ("training.epochs",)
#: how the work is run, not what it computes: a resumed run may move to another device or
#: float32 runtime, use more workers or another copy of the feature cache, or log to other
#: backends (``--log``, :mod:`deephash.training.loggers`)
HOW_RUN = ("extraction.device", "extraction.num_workers", "extraction.batch_size",
           "extraction.cache_dir", "extraction.cache", "extraction.runtime", "interleave",
           "training.log", "training.mlflow_uri")
_NOT_COMPARED = frozenset({"out", *HOW_RUN, *(".".join(path) for path in RUN_FLAGS)})
_ABSENT = object()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def saved_config(config: Any) -> dict[str, Any]:
    """``config`` as ``config.yaml`` holds it: the run-control flags set to false, so that
    ``--config RUN_DIR/config.yaml`` never resumes or clears a folder by itself."""
    data = to_dict(config)
    for *parents, name in RUN_FLAGS:
        node: Any = data
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and name in node:
            node[name] = False
    return data


def save_config(config: Any, path: Path) -> None:
    """Write :func:`saved_config` as YAML (atomically)."""
    save_bytes(path, yaml.safe_dump(saved_config(config), sort_keys=False).encode())


def config_changes(saved: dict[str, Any], config: Any,
                   ignore: tuple[str, ...] = ()) -> list[str]:
    """``["training.margin 0.2 -> 0.4", ...]``: the dotted fields where ``config`` differs
    from a saved ``config.yaml`` mapping, leaving out ``out``, the run-control flags and
    ``ignore``. A field missing from a section the saved file has was added to deephash
    after the run was saved: it reads as its default (a section missing altogether, as a
    baseline's ``training``, stays a difference)."""
    before, after = flatten(saved), flatten(saved_config(config))
    defaults = flatten(saved_config(type(config)()))
    sections = {key.rpartition(".")[0] for key in before}
    for key in after.keys() - before.keys():
        if key.rpartition(".")[0] in sections and key in defaults:
            before[key] = defaults[key]
    skipped = _NOT_COMPARED | set(ignore)

    def show(values: dict[str, Any], key: str) -> str:
        value = values.get(key, _ABSENT)
        return "(absent)" if value is _ABSENT else json.dumps(value)

    return [f"{key} {show(before, key)} -> {show(after, key)}"
            for key in sorted(before.keys() | after.keys())
            if key not in skipped and before.get(key, _ABSENT) != after.get(key, _ABSENT)]


def _protected(config: Any) -> list[tuple[str, Path]]:
    """Folders that ``--overwrite`` must never clear, nor any folder holding them."""
    data, extraction = getattr(config, "data", None), getattr(config, "extraction", None)
    return protected_folders(data.data_dir if data else None, data.dataset if data else "auto",
                             extraction.cache_dir if extraction else None)


def _check_clearable(path: Path, config: Any) -> None:
    check_clearable(path, "run folder", "run.json or config.yaml", is_run_folder,
                    _protected(config))


def _check_resumable(path: Path, config: Any, sweep: tuple[str, ...]) -> None:
    saved = read_parsed(path / "config.yaml", yaml.safe_load)
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: {path} holds no deephash run (no readable config.yaml); "
                          "choose another --out or start without --resume")
    changes = config_changes(saved, config, (*EXTENDABLE, *sweep))
    if changes:
        shown = ", ".join(changes[:4]) + (f" and {len(changes) - 4} more"
                                          if len(changes) > 4 else "")
        raise ConfigError(f"--resume: {path} holds a run with another configuration ({shown}); "
                          f"resume it with --config {path / 'config.yaml'} --resume, or use "
                          "--overwrite or another --out")


def open_run(out: str | Path, config: Any, *, resume: bool | None = None,
             overwrite: bool = False, sweep: tuple[str, ...] = ()) -> RunFolder:
    """Check that ``out`` may receive a run of ``config``; nothing is written until the
    caller enters the returned folder (``with open_run(...) as folder:``).

    An empty or new folder is always fine. A non-empty one is refused unless ``resume``
    (its ``config.yaml`` must equal ``config`` except ``out``, the run-control flags,
    ``training.epochs`` (train longer) and the ``sweep`` fields, e.g. ``("seeds",)``, whose
    lists a resumed study may extend) or ``overwrite`` (it is cleared on entering).
    ``resume=None``: the command has no ``--resume``, so the refusal names only
    ``--overwrite``. Raises ``ConfigError``.
    """
    path = Path(out)
    if not ranks().main:  # rank 0 checks and writes (deephash.distributed)
        return RunFolder(path, config, clear=False, resumed=bool(resume), writes=False)
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite clears it; give one of them")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; choose a folder")
    held = path.is_dir() and any(path.iterdir())
    if held and overwrite:
        _check_clearable(path, config)
    elif held and resume:
        _check_resumable(path, config, sweep)
    elif held:
        info = read_parsed(path / "run.json", json.loads)  # a run.json without state: finished
        what = (f"a {info.get('state', 'finished')} run" if isinstance(info, dict) else
                "a run" if is_run_folder(path) else "other files")
        fix = ("continue it with --resume (same configuration), replace it with --overwrite"
               if resume is not None else "replace it with --overwrite")
        raise ConfigError(f"--out {path} already holds {what}; {fix}, or choose another --out")
    return RunFolder(path, config, clear=held and overwrite, resumed=held and bool(resume))


def sub_run_flags(resume: bool, folder: Path) -> tuple[bool, bool]:
    """``(resume, overwrite)`` of a training sub-run in ``folder`` of a study.

    A resumed study continues each sub-run that has a ``last.pt`` (a finished one is only
    re-evaluated), starts over one that stopped before its first epoch, and begins new ones.
    A study that is not resumed writes into a new or cleared folder, so its sub-runs do too.
    """
    if not resume:
        return False, False
    started = (folder / "last.pt").is_file()
    return started, not started and folder.is_dir() and any(folder.iterdir())


def run_seconds(path: Path, clock: str = "seconds") -> dict[str, float]:
    """The wall-clock figures of a run's ``run.json`` (empty if it has none), or with
    ``clock="cpu_seconds"`` its CPU-time figures (empty in a run.json older than them)."""
    info = read_parsed(path / "run.json", json.loads)
    return dict(info.get(clock) or {}) if isinstance(info, dict) else {}


def train_time(path: Path) -> tuple[float, bool]:
    """A finished run's training time: its CPU seconds, or where its ``run.json`` kept none
    (a run from before deephash kept CPU times) its wall-clock seconds, and whether the
    figure is wall-clock; ``nan`` when it has neither."""
    cpu = run_seconds(path, "cpu_seconds").get("train")
    if cpu is not None:
        return float(cpu), False
    return float(run_seconds(path).get("train", math.nan)), True


def run_load(path: Path) -> dict[str, Any] | None:
    """The ``load`` of a run's ``run.json`` (:func:`deephash.machine.load_summary`), or
    ``None`` when it has none."""
    info = read_parsed(path / "run.json", json.loads)
    load = info.get("load") if isinstance(info, dict) else None
    return load if isinstance(load, dict) else None


def _one_line(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    if isinstance(error, GeneratorExit):
        return "stopped: a run it took turns with failed or was interrupted"
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, DeephashError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunFolder:
    """A checked run folder (from :func:`open_run`).

    Entering it clears it (``--overwrite``), writes ``config.yaml`` and ``run.json`` with
    state ``running``; leaving it rewrites ``run.json`` as ``finished`` with ``seconds``
    (what the study put in :attr:`seconds`, plus ``total`` since :func:`open_run`),
    ``cpu_seconds`` and ``load`` (when the study put any in :attr:`cpu_seconds` and
    :attr:`load`) and :attr:`device`, or as ``failed`` with the error's first line (also on
    Ctrl-C, or when runs trained in turn stop with another's failure); the error itself
    propagates. :attr:`details` (set before entering) go into ``run.json`` too, e.g. the
    images ``--skip-bad-images`` left out.
    """

    def __init__(self, path: Path, config: Any, clear: bool, resumed: bool,
                 writes: bool = True) -> None:
        self.path = path
        self.writes = writes
        self.config = config
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.load: dict[str, Any] | None = None
        self.device: str | None = None
        self.details: dict[str, Any] = {}
        self._clear = clear
        self._resumed = resumed
        self._clock = time.perf_counter()
        self._info: dict[str, Any] = {}

    def __enter__(self) -> RunFolder:
        if not self.writes:
            return self
        if self._clear:
            for child in self.path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.path / "config.yaml")
        self._info = {
            "state": "running", "started": _now(), "resumed": self._resumed,
            "command": sys.argv, "deephash": deephash.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(), "git_commit": _git_commit(),
            "machine": describe_machine(), **self.details,
        }
        save_json(self.path / "run.json", self._info)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if not self.writes:
            return
        info = {**self._info, "state": "finished" if error is None else "failed",
                "ended": _now(), "device": self.device,
                "seconds": {**self.seconds, "total": time.perf_counter() - self._clock}}
        if self.cpu_seconds:
            info["cpu_seconds"] = dict(self.cpu_seconds)
        if self.load is not None:
            info["load"] = self.load
        if error is not None:
            info["error"] = _one_line(error)
        try:
            save_json(self.path / "run.json", info)
        except OSError as exc:
            if error is None:
                raise
            log.warning("could not mark %s as failed: %s", self.path, exc)
