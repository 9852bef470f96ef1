"""The finished run folders a report is made of, read back from their files.

A run folder is any folder holding ``metrics.json`` (``baseline``, ``train``, each
``bits-K`` of ``hash``, the sub-runs of the studies); :func:`find_runs` collects them
under the given folders. Each :class:`RunRecord` knows what kind of result it is (frozen
features, a trained embedding, binary codes), a title, its configuration, metrics,
validation figures, history, timings (wall-clock and CPU time), the machine's load while
it trained, and the machine (from its own ``run.json`` or the nearest one above it, as a
``hash`` sweep writes one for all code lengths). The training time of a margin selection
is the whole grid's: the sum over its ``margin-*`` sub-runs (its load: theirs combined).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deephash.errors import ConfigError
from deephash.machine import combined_load

#: the plots a run folder may hold, in the order a report shows them
PLOTS = (("curves.png", "training curves"), ("pr_curve.png", "precision-recall"),
         ("tsne.png", "t-SNE of the queries"))


def _read(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        return yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    except (ValueError, yaml.YAMLError):
        return None


@dataclass
class RunRecord:
    """One finished run folder."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    #: training seconds of the sub-runs it was selected from (a margin grid), else nan
    selection_seconds: float = math.nan
    #: their training CPU seconds, else nan
    selection_cpu_seconds: float = math.nan
    #: their load while they trained, else None
    selection_load: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``codes`` (Hamming on sign codes), ``trained`` (an embedding) or ``frozen``."""
        if "bits" in self.metrics:
            return "codes"
        return "trained" if "training" in self.config else "frozen"

    @property
    def title(self) -> str:
        """What the run is, in words: ``frozen efficientnet_lite0 128px``, ``facenet +
        semi-hard, margin 0.2 (partial, 2 blocks)``, ``48-bit codes: dtsh + batch-all,
        margin 16, schedule margin=step:1:16 (frozen)``."""
        backbone = self.config.get("backbone", {})
        if self.kind == "frozen":
            return f"frozen {backbone.get('name', '?')} {backbone.get('image_size', '?')}px"
        cfg = self.config.get("training", {})
        from deephash.hashing.shallow import shallow_coder
        from deephash.pipeline.evaluate import method_title

        margin = self.metrics.get("selected_margin", cfg.get("margin"))  # a loss study's pick
        procedure = str(cfg.get("procedure", "triplet"))
        if procedure == "zhuang":
            method = "zhuang et al."
        elif shallow_coder(procedure) is not None:
            method = f"{procedure}, fitted (no training)"
        else:
            method = method_title(str(cfg.get("loss", "facenet")),
                                  str(cfg.get("miner", "semi-hard")),
                                  float(margin) if isinstance(margin, (int, float)) else None)
        schedules = cfg.get("schedules") or []
        method += "".join(f", schedule {text}" for text in schedules)  # margin=step:1:16
        mode = cfg.get("mode", "frozen")
        if mode == "partial":
            blocks = cfg.get("trainable_blocks", "?")
            mode = f"partial, {blocks} block{'' if blocks == 1 else 's'}"
        views = f", {cfg['views']} views" if cfg.get("views") else ""
        prefix = f"{self.metrics['bits']}-bit codes: " if self.kind == "codes" else ""
        return f"{prefix}{method} ({mode}{views})"

    @property
    def protocol(self) -> str:
        return str(self.metrics.get("protocol", self.config.get("data", {}).get("protocol", "")))

    @property
    def train_seconds(self) -> float:
        """Its own training time, or for a selected margin the whole grid's."""
        own = _train_seconds(self.info)
        return self.selection_seconds if math.isnan(own) else own

    @property
    def train_cpu_seconds(self) -> float:
        """Its own training CPU time, or a selected margin's grid's (``nan`` for a run
        from before deephash kept CPU times)."""
        own = _train_seconds(self.info, "cpu_seconds")
        return self.selection_cpu_seconds if math.isnan(own) else own

    @property
    def load(self) -> dict[str, Any] | None:
        """The machine's load while it trained (``run.json``), or its grid's."""
        own = self.info.get("load")
        return own if isinstance(own, dict) else self.selection_load

    def figure(self, key: str) -> float:
        """A metric (``nan`` when the run does not have it)."""
        value = self.metrics.get(key)
        return float(value) if isinstance(value, (int, float)) else math.nan

    def plots(self) -> list[tuple[Path, str]]:
        return [(self.path / name, caption) for name, caption in PLOTS
                if (self.path / name).is_file()]


def _train_seconds(info: Any, clock: str = "seconds") -> float:
    seconds = info.get(clock) if isinstance(info, dict) else None
    value = seconds.get("train", math.nan) if isinstance(seconds, dict) else math.nan
    return float(value) if isinstance(value, (int, float)) else math.nan


def read_run(path: Path) -> RunRecord | None:
    """The run in ``path``, or ``None`` when it holds no readable ``metrics.json``."""
    metrics = _read(path / "metrics.json")
    if not isinstance(metrics, dict):
        return None
    config = _read(path / "config.yaml")
    info: dict[str, Any] = {}
    for folder in (path, path.parent, path.parent.parent):  # its own, else its sweep's
        found = _read(folder / "run.json")
        if isinstance(found, dict):
            info = found
            break
    history = _read(path / "history.json")
    grid = [_read(sub / "run.json") for sub in sorted(path.glob("margin-*"))]
    return RunRecord(path, config if isinstance(config, dict) else {}, metrics, info,
                     history if isinstance(history, list) else [],
                     _sum([_train_seconds(sub) for sub in grid]),
                     _sum([_train_seconds(sub, "cpu_seconds") for sub in grid]),
                     combined_load([sub["load"] for sub in grid if isinstance(sub, dict)
                                    and isinstance(sub.get("load"), dict)]))


def _sum(seconds: list[float]) -> float:
    """The total, ``nan`` when there is none or one is missing."""
    return math.fsum(seconds) if seconds and not any(map(math.isnan, seconds)) else math.nan


def find_runs(paths: list[Path]) -> list[RunRecord]:
    """Every run folder at or under ``paths``, in path order; raises ``ConfigError`` for a
    path that does not exist or holds no finished run."""
    runs: list[RunRecord] = []
    for root in paths:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a folder; pass run folders written by deephash")
        found = [run for folder in (root, *sorted(p.parent for p in root.rglob("metrics.json")))
                 if (run := read_run(folder)) is not None]
        unique = {run.path: run for run in found}
        if not unique:
            raise ConfigError(f"{root} holds no finished run (no metrics.json); pass run "
                              "folders of deephash baseline, train, hash or a study")
        runs.extend(unique.values())
    return runs
