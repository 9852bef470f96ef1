"""The MLflow backend of the experiment logs (``--log mlflow``,
:mod:`deephash.training.loggers`): one MLflow run per training run, through the tracking
client (no global state of MLflow's fluent API), in a local file store
(``RUN_DIR/mlruns``) or the tracking URI of ``--mlflow-uri``."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from deephash.config import flatten, to_dict
from deephash.errors import ConfigError
from deephash.fileio import save_json
from deephash.training.loggers import LogTarget, numbers

#: the MLflow experiment every run logs into
EXPERIMENT = "deephash"
#: the ``history.json`` field whose steps tell which epochs an MLflow run holds (always
#: finite, unlike the loss of an epoch without a useful batch)
_EPOCH_MARK = "elapsed_seconds"


def tracking_uri(target: LogTarget) -> str:
    """The MLflow tracking URI: ``--mlflow-uri`` as given when it is a URI
    (``sqlite:///runs.db``, ``http://host:5000``), a file store when it is a folder, by
    default ``RUN_DIR/mlruns``."""
    uri = target.mlflow_uri
    if uri is not None and is_uri(uri):
        return uri
    folder = target.run / "mlruns" if uri is None else Path(uri).expanduser()
    return folder.resolve().as_uri()


def is_uri(text: str) -> bool:
    """Whether ``--mlflow-uri`` names a URI (``scheme:...``, a scheme of two letters or
    more) rather than a folder."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", text) is not None


def check_uri(text: str) -> None:
    """``--mlflow-uri``: a URI, or a path where a folder (a file store) can be."""
    if not is_uri(text) and Path(text).expanduser().is_file():
        raise ConfigError(f"--mlflow-uri {text} is a file; pass a folder (a file store) or a "
                          "tracking URI such as sqlite:///runs.db")


def metric_key(name: str) -> str:
    """``"metrics/map@all"`` -> ``"metrics/map_at_all"``: MLflow's metric names take
    letters, digits, ``_ - . / :`` and spaces only."""
    return re.sub(r"[^\w\-./: ]", "_", name.replace("@", "_at_"))


class MlflowLogger:
    """One run of experiment ``deephash`` in an MLflow tracking store (the client API, no
    global state): the configuration's fields as parameters (``training.margin``), the
    epochs' figures as metrics, ``RUN_DIR/mlflow_run.json`` naming the run. A resumed run
    continues it and logs the epochs it lacks; the run ends ``FINISHED`` or ``FAILED``.

    Recent MLflow releases open a file store only when ``MLFLOW_ALLOW_FILE_STORE=true``
    opts into it: deephash sets it for its own process when it opens one (``mlflow ui``
    on that store needs it too)."""

    name: ClassVar[str] = "mlflow"
    package: ClassVar[str | None] = "mlflow"

    def __init__(self, target: LogTarget) -> None:
        from mlflow.tracking import MlflowClient

        self.target = target
        self.uri = tracking_uri(target)
        if self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id = ""

    def start(self, history: Sequence[Mapping[str, Any]]) -> None:
        self.run_id = self._previous_run() or ""
        logged: set[int] = set()
        if self.run_id:
            self.client.update_run(self.run_id, status="RUNNING")
            logged = {m.step for m in self.client.get_metric_history(self.run_id, _EPOCH_MARK)}
        else:
            self.run_id = self._new_run()
        self._log([(int(row["epoch"]), numbers(row)) for row in history
                   if int(row["epoch"]) not in logged])

    def epoch(self, row: Mapping[str, Any]) -> None:
        self._log([(int(row["epoch"]), numbers(row))])

    def final(self, figures: Mapping[str, float], step: int) -> None:
        self._log([(step, dict(figures))])

    def close(self, failed: bool) -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")

    def _previous_run(self) -> str | None:
        """The run id of ``mlflow_run.json`` when it names a run of this tracking URI."""
        try:
            saved = json.loads((self.target.run / "mlflow_run.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or saved.get("tracking_uri") != self.uri:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_run(str(saved.get("run_id"))).info.run_id)
        except MlflowException:
            return None

    def _new_run(self) -> str:
        from mlflow.entities import Param

        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(EXPERIMENT))
        run = self.client.create_run(experiment_id, run_name=str(self.target.run), tags={
            "deephash.run_dir": str(self.target.run.resolve())})
        run_id = str(run.info.run_id)
        config = {} if self.target.config is None else flatten(to_dict(self.target.config))
        params = [Param(key, str(value)[:500]) for key, value in config.items()]
        for start in range(0, len(params), 100):  # MLflow takes 100 parameters a call
            self.client.log_batch(run_id, params=params[start:start + 100])
        save_json(self.target.run / "mlflow_run.json", {"tracking_uri": self.uri,
                                                        "run_id": run_id})
        return run_id

    def _log(self, steps: list[tuple[int, dict[str, float]]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(metric_key(key), value, now, step)
                   for step, values in steps for key, value in values.items() if key != "epoch"]
        for start in range(0, len(metrics), 1000):  # and 1,000 metrics
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])
