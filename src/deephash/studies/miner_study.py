"""``deephash miner-study``: every miner with the same loss, margin, budget and seed.

By default every miner that serves the loss: the triplet miners for a triplet loss, and
the pair miners too for the contrastive loss.

For each miner: test mAP@all and kNN accuracy of its best-on-validation epoch, the mean
CPU time per epoch, the total training CPU time, and the CPU time until its validation
mAP@all first reached 95% of its own best. CPU time (all the process's threads,
:mod:`deephash.training.clock`) because other jobs on the machine barely move it, where
they multiplied the wall-clock figures and reordered the miners; a time taken while the
machine's load exceeded its cores is marked. Writes ``study.json`` (the scores: the same
bytes on a seeded rerun), ``study.md`` and ``study.png`` (validation mAP against CPU time
per miner; final test scores against total training CPU time); the times themselves are
kept in ``run.json``: ``seconds`` (wall-clock) and ``cpu_seconds``, each with
``"<miner>.train_seconds"`` and so on, and ``load``.

``--interleave`` trains the miners in turn, one epoch of each, instead of one after the
other: a slow drift of the machine then falls on every miner alike. The scores are the
same as in sequence (each run's random generators are its own), but every miner's
training set is held in memory at once. A resumed study continues each miner from its
``last.pt`` either way, and may switch between the two orders.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from deephash.config import variant
from deephash.fileio import save_json
from deephash.losses import miners_for
from deephash.machine import combined_load
from deephash.pipeline.protocol import open_protocol
from deephash.studies.configs import MinerStudyConfig
from deephash.studies.run_folder import RunFolder, open_run, run_load, run_seconds, sub_run_flags
from deephash.studies.tables import load_footnote, markdown_table, metric_cell, time_cell
from deephash.studies.train import run_train, train_steps
from deephash.training.config import TrainConfig
from deephash.training.rounds import in_turn
from deephash.validation import validate
from deephash.viz.studies import plot_miner_study

log = logging.getLogger(__name__)

__all__ = ["MinerStudyConfig", "miners_for", "run_miner_study", "time_to_fraction",
           "with_miner"]


def time_to_fraction(history: list[dict[str, Any]], fraction: float = 0.95,
                     clock: str = "elapsed_seconds") -> float:
    """Seconds until validation mAP first reached ``fraction`` of its best, on ``clock``
    (``elapsed_seconds``: wall-clock; ``elapsed_cpu_seconds``: CPU time). Epochs that
    were not validated (``nan``, ``--validate-every``) do not count."""
    best = max(h["val_map"] for h in history if not math.isnan(h["val_map"]))
    return next(h[clock] for h in history if h["val_map"] >= fraction * best)


def has_cpu_times(history: list[dict[str, Any]]) -> bool:
    """Whether every epoch of a history has its CPU times (not one older than them)."""
    return all(math.isfinite(h.get("elapsed_cpu_seconds", math.nan))
               and math.isfinite(h.get("train_cpu_seconds", math.nan)) for h in history)


def timings(history: list[dict[str, Any]], seconds: dict[str, float], cpu: bool
            ) -> dict[str, float]:
    """A miner's time figures on one clock (CPU time with ``cpu``, else wall-clock):
    mean training seconds per epoch, total training seconds (``seconds``: the run's
    ``run.json`` figures on that clock), seconds to 95% of its best validation mAP."""
    prefix = "train_cpu" if cpu else "train"
    return {"seconds_per_epoch": math.fsum(h[f"{prefix}_seconds"] for h in history)
            / len(history),
            "train_seconds": seconds.get("train", math.nan),
            "seconds_to_95pct": time_to_fraction(
                history, clock="elapsed_cpu_seconds" if cpu else "elapsed_seconds")}


def with_miner(config: TrainConfig, miner: str, out: Path, resume: bool = False,
               overwrite: bool = False) -> TrainConfig:
    """The ``TrainConfig`` of ``config`` with ``miner``, into ``out``."""
    return variant(config, TrainConfig, out=str(out), overwrite=overwrite,
                   training={"miner": miner, "resume": resume})


def run_miner_study(config: MinerStudyConfig) -> list[dict[str, Any]]:
    validate(config)
    miners = config.miners or miners_for(config.training.loss)
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite, sweep=("miners",))
    open_protocol(config)  # every image's header, the data's digest: before the folder
    with folder:
        return _compare(config, miners, folder)


def _train_all(config: MinerStudyConfig, miners: tuple[str, ...], run: Path
               ) -> dict[str, dict[str, Any]]:
    """Each miner's test metrics, trained one after the other or in turn."""
    configs = {miner: with_miner(config, miner, run / miner,
                                 *sub_run_flags(config.training.resume, run / miner))
               for miner in miners}
    if config.interleave:
        log.info("training the miners in turn, one epoch of each: %s", ", ".join(miners))
        return in_turn({miner: train_steps(sub) for miner, sub in configs.items()})
    return {miner: run_train(sub) for miner, sub in configs.items()}


def _compare(config: MinerStudyConfig, miners: tuple[str, ...],
             folder: RunFolder) -> list[dict[str, Any]]:
    """``study.json`` holds the scores alone; the times go to ``run.json``
    (``"<miner>.<figure>"`` in ``seconds`` and ``cpu_seconds``) and to the table and plot."""
    run = folder.path
    results = _train_all(config, miners, run)
    histories = {m: json.loads((run / m / "history.json").read_text()) for m in miners}
    cpu = all(map(has_cpu_times, histories.values()))  # one clock for every miner
    rows, timed, loads = [], [], {}
    for miner in miners:
        sub, metrics, history = run / miner, results[miner], histories[miner]
        row: dict[str, Any] = {
            "miner": miner, "map@all": metrics["map@all"],
            **{key: metrics[key] for key in ("knn_acc@10", "knn_acc@1") if key in metrics},
            "val_map@all": metrics["val_map@all"],
            "triplets_per_batch": sum(h["triplets_per_batch"] for h in history) / len(history),
            "empty_batches": sum(h["empty_batches"] for h in history),
        }
        wall = timings(history, run_seconds(sub), cpu=False)
        folder.seconds.update({f"{miner}.{name}": value for name, value in wall.items()})
        shown = timings(history, run_seconds(sub, "cpu_seconds"), cpu=True) if cpu else wall
        if cpu:
            folder.cpu_seconds.update({f"{miner}.{k}": v for k, v in shown.items()})
        loads[miner] = run_load(sub)
        rows.append(row)
        timed.append({**row, **shown})
        log.info("miner %s: test mAP@all %.4f", miner, metrics["map@all"])
    folder.load = combined_load([load for load in loads.values() if load is not None])
    save_json(run / "study.json", {"loss": config.training.loss,
                                   "margin": config.training.margin, "rows": rows})
    clock = "CPU s" if cpu else "wall-clock s"
    (run / "study.md").write_text(markdown_table(
        ["miner", "test mAP@all", "test kNN@10", "val mAP@all", f"{clock}/epoch (train)",
         f"{clock} to 95% of best val", f"total {clock}", "triplets/batch"],
        [[r["miner"], f"{r['map@all']:.4f}", metric_cell(r, "knn_acc@10"),
          f"{r['val_map@all']:.4f}", time_cell(r["seconds_per_epoch"], 2, load=loads[m]),
          time_cell(r["seconds_to_95pct"], load=loads[m]),
          time_cell(r["train_seconds"], load=loads[m]), f"{r['triplets_per_batch']:.0f}"]
         for m, r in zip(miners, timed, strict=True)]) + load_footnote(loads.values()))
    plot_miner_study(histories, timed, run / "study.png",
                     f"{config.training.loss}, margin {config.training.margin:g}", cpu=cpu)
    return rows

