"""Experiment logs of a training run: each epoch's figures, and the final ones.

Every run writes ``RUN_DIR/history.csv``: one row per epoch with the fields of
``history.json`` (:class:`~deephash.training.epochs.EpochRecord`, in that order; NaN as
an empty cell), rewritten after each epoch so that it always equals the history so far.
``--log`` adds backends (the names of :data:`deephash.registries.LOGGERS`), each an
optional extra of the package:

- ``tensorboard``: event files under ``RUN_DIR/tensorboard/``, a scalar per field and
  epoch (step = the epoch as ``history.json`` counts it, from 0);
- ``mlflow``: one MLflow run (the configuration as its parameters, the fields as metrics
  with the epoch as step) in a local file store, ``RUN_DIR/mlruns``, or the tracking URI of
  ``--mlflow-uri``; its id is kept in ``RUN_DIR/mlflow_run.json`` so that ``--resume``
  continues it.

At the end of a run the final figures (``metrics.json``'s numbers, or a run without a
test evaluation its ``validation.json``'s) go to the backends too, prefixed
``metrics/`` or ``validation/``. A resumed run appends its new epochs: the CSV is rewritten
from the whole history, a backend added on resume first logs the earlier epochs, and one
that logged them before logs only what it lacks. A backend whose package is missing is
refused before any work (:func:`check_loggers`, called by :mod:`deephash.validation`).

One protocol (:class:`Logger`), one class per backend (MLflow's in
:mod:`deephash.training.mlflow_logger`); :func:`open_run_log` opens a run's loggers as a
:class:`RunLog`, whose :meth:`RunLog.follow` logs each epoch a training run yields
(:mod:`deephash.training.rounds`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar

from deephash.errors import ConfigError
from deephash.fileio import save_bytes
from deephash.registries import LOGGERS
from deephash.training.config import TrainConfig
from deephash.training.epochs import EpochRecord
from deephash.training.rounds import Steps

R = TypeVar("R")

#: ``history.csv``'s columns: ``history.json``'s fields, in their order
COLUMNS = tuple(f.name for f in dataclasses.fields(EpochRecord))


@dataclass(frozen=True)
class LogTarget:
    """Where and what a logger logs: the run folder, the run's configuration (MLflow's
    parameters; any config dataclass) and ``--mlflow-uri`` (``None``: a file store in the
    run folder)."""

    run: Path
    config: Any = None
    mlflow_uri: str | None = None


class Logger(Protocol):
    """One backend of a run's experiment log. ``row``: an epoch's ``history.json`` entry
    (field -> number, ``epoch`` counting from 0)."""

    name: ClassVar[str]
    #: the module the backend imports (``None``: none), which deephash's extra of the
    #: backend's name installs (``pip install 'deephash[tensorboard]'``)
    package: ClassVar[str | None]

    def start(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Called once, with the epochs trained before (a resumed run's; else none)."""

    def epoch(self, row: Mapping[str, Any]) -> None:
        """Log one epoch that has just ended."""

    def final(self, figures: Mapping[str, float], step: int) -> None:
        """Log the run's final figures (name -> finite number) at ``step``."""

    def close(self, failed: bool) -> None:
        """The run ended (``failed``: with an error, or interrupted)."""


def numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``row`` (not booleans), as floats: what a backend logs."""
    return {key: float(value) for key, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def _cell(value: Any) -> str:
    """A CSV cell: a float as Python (and ``history.json``) writes it, NaN as empty."""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


class CsvLogger:
    """``RUN_DIR/history.csv``, rewritten (atomically) after each epoch from every row so
    far; written by every run, with no package to install."""

    name: ClassVar[str] = "csv"
    package: ClassVar[str | None] = None

    def __init__(self, target: LogTarget) -> None:
        self.path = target.run / "history.csv"
        self.rows: list[Mapping[str, Any]] = []

    def start(self, history: Sequence[Mapping[str, Any]]) -> None:
        self.rows = list(history)
        if self.rows:
            self._write()

    def epoch(self, row: Mapping[str, Any]) -> None:
        self.rows.append(row)
        self._write()

    def final(self, figures: Mapping[str, float], step: int) -> None:
        """Nothing: the final figures are ``metrics.json``'s."""

    def close(self, failed: bool) -> None:
        """Nothing to close: each write is whole."""

    def _write(self) -> None:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([_cell(row.get(column, math.nan)) for column in COLUMNS]
                         for row in self.rows)
        save_bytes(self.path, text.getvalue().encode())


class TensorBoardLogger:
    """Event files under ``RUN_DIR/tensorboard/`` (``torch.utils.tensorboard``): one scalar
    per field of ``history.json`` and epoch, named as there (``loss``, ``val_map``); the
    final figures at the last epoch's step. A resumed run adds a new event file with the
    new epochs (the earlier ones too, when the folder has no events yet)."""

    name: ClassVar[str] = "tensorboard"
    package: ClassVar[str | None] = "tensorboard"

    def __init__(self, target: LogTarget) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = target.run / "tensorboard"
        self._fresh = not any(folder.glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(log_dir=str(folder))

    def start(self, history: Sequence[Mapping[str, Any]]) -> None:
        if self._fresh:  # new, or --log tensorboard added when the run was resumed
            for row in history:
                self.epoch(row)

    def epoch(self, row: Mapping[str, Any]) -> None:
        step = int(row["epoch"])
        for key, value in numbers(row).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def final(self, figures: Mapping[str, float], step: int) -> None:
        for key, value in figures.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self, failed: bool) -> None:
        self.writer.close()


def check_loggers(names: Sequence[str], mlflow_uri: str | None) -> None:
    """Refuse, before any work, a ``--log`` backend whose package is not installed (naming
    the pip command) and a ``--mlflow-uri`` without ``--log mlflow``. ``ConfigError``."""
    for name in names:
        package = getattr(LOGGERS.get(name), "package", None)
        if package is not None and find_spec(package) is None:
            raise ConfigError(f"--log {name} needs the {package} package, which is not "
                              f"installed: pip install 'deephash[{name}]'")
    if mlflow_uri is None:
        return
    if "mlflow" not in names:
        raise ConfigError(f"--mlflow-uri {mlflow_uri} applies to --log mlflow; add it, or "
                          "drop --mlflow-uri")
    from deephash.training.mlflow_logger import check_uri

    check_uri(mlflow_uri)


class RunLog:
    """The loggers of one run: ``history.csv`` always, then the ``--log`` backends.
    A context manager: leaving it closes each logger (a failed run as failed)."""

    def __init__(self, loggers: Sequence[Logger]) -> None:
        self.loggers = list(loggers)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for logger in self.loggers:
            logger.close(failed=error is not None)

    def epoch(self, record: EpochRecord) -> None:
        row = dataclasses.asdict(record)
        for logger in self.loggers:
            logger.epoch(row)

    def final(self, summary: Mapping[str, Any], prefix: str, step: int) -> None:
        """The numbers of ``summary`` (``metrics.json``), each named ``prefix/key``."""
        named = {f"{prefix}/{key}": value for key, value in numbers(summary).items()}
        for logger in self.loggers:
            logger.final(named, step)

    def follow(self, steps: Steps[R]) -> Steps[R]:
        """``steps`` (a training run that yields each epoch's :class:`EpochRecord`), each
        epoch logged as it is yielded; the run's result."""
        try:
            while True:
                try:
                    record = next(steps)
                except StopIteration as done:
                    return done.value
                self.epoch(record)
                yield record
        finally:
            steps.close()


def open_run_log(config: TrainConfig, run: Path, history: Sequence[Mapping[str, Any]] = (),
                 writes: bool = True) -> RunLog:
    """The experiment logs of the run of ``config`` in ``run``: ``history.csv`` and the
    ``--log`` backends, each started with ``history`` (a resumed run's earlier epochs,
    ``history.json`` rows); nothing where the process ``writes`` nothing (a rank other
    than 0)."""
    if not writes:
        return RunLog([])
    target = LogTarget(run, config, config.training.mlflow_uri)
    chosen = [CsvLogger.name, *(n for n in config.training.log if n != CsvLogger.name)]
    log = RunLog([LOGGERS.create(name, target) for name in chosen])
    rows = [dataclasses.asdict(EpochRecord(**row)) for row in history]  # older: defaults
    for logger in log.loggers:
        logger.start(rows)
    return log
