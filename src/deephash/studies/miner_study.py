"""``deephash miner-study``: every miner with the same loss, margin, budget and seed.

By default every miner that serves the loss: the triplet miners for a triplet loss, and
the pair miners too for the contrastive loss.

For each miner: test mAP@all and kNN accuracy of its best-on-validation epoch, the mean
time per epoch, the total training time, and the wall-clock time until its validation
mAP@all first reached 95% of its own best. Writes ``study.json`` (the scores: the same
bytes on a seeded rerun), ``study.md`` and ``study.png`` (validation mAP against wall-clock
time per miner; final test scores against total training time); the times themselves are
kept in ``run.json`` (``seconds``, ``"<miner>.train_seconds"`` and so on).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from deephash.config import variant
from deephash.errors import ConfigError
from deephash.fileio import save_json
from deephash.losses import loss_traits
from deephash.miners import miner_names
from deephash.pipeline.protocol import open_protocol
from deephash.studies.configs import MinerStudyConfig
from deephash.studies.run_folder import RunFolder, open_run, run_seconds, sub_run_flags
from deephash.studies.tables import markdown_table
from deephash.studies.train import run_train
from deephash.training.config import TrainConfig
from deephash.validation import validate
from deephash.viz.studies import plot_miner_study

log = logging.getLogger(__name__)

__all__ = ["MinerStudyConfig", "miners_for", "run_miner_study", "time_to_fraction",
           "with_miner"]


def time_to_fraction(history: list[dict[str, Any]], fraction: float = 0.95) -> float:
    """Wall-clock seconds until validation mAP first reached ``fraction`` of its best."""
    best = max(h["val_map"] for h in history)
    return next(h["elapsed_seconds"] for h in history if h["val_map"] >= fraction * best)


def with_miner(config: TrainConfig, miner: str, out: Path, resume: bool = False,
               overwrite: bool = False) -> TrainConfig:
    """The ``TrainConfig`` of ``config`` with ``miner``, into ``out``."""
    return variant(config, TrainConfig, out=str(out), overwrite=overwrite,
                   training={"miner": miner, "resume": resume})


def miners_for(loss_name: str) -> tuple[str, ...]:
    """Every registered miner whose tuples (triplets or pairs) the loss trains on."""
    traits = loss_traits(loss_name)
    if not traits.uses_miner:
        raise ConfigError(f"the {loss_name} loss uses no miner; a miner study needs a loss "
                          "that does")
    return tuple(sorted(name for kind in traits.accepts for name in miner_names(kind)))


def run_miner_study(config: MinerStudyConfig) -> list[dict[str, Any]]:
    validate(config)
    miners = config.miners or miners_for(config.training.loss)
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite, sweep=("miners",))
    open_protocol(config)  # every image's header, the data's digest: before the folder
    with folder:
        return _compare(config, miners, folder)


def _compare(config: MinerStudyConfig, miners: tuple[str, ...],
             folder: RunFolder) -> list[dict[str, Any]]:
    """``study.json`` holds the scores alone; the wall-clock figures go to ``run.json``
    (``"<miner>.<figure>"``) and to the table and plot."""
    run = folder.path
    rows, timed, curves = [], [], {}
    for miner in miners:
        sub = run / miner
        metrics = run_train(with_miner(config, miner, sub,
                                       *sub_run_flags(config.training.resume, sub)))
        history = json.loads((sub / "history.json").read_text())
        curves[miner] = history
        row = {
            "miner": miner, "map@all": metrics["map@all"], "knn_acc@10": metrics["knn_acc@10"],
            "knn_acc@1": metrics["knn_acc@1"], "val_map@all": metrics["val_map@all"],
            "triplets_per_batch": sum(h["triplets_per_batch"] for h in history) / len(history),
            "empty_batches": sum(h["empty_batches"] for h in history),
        }
        seconds = {"seconds_per_epoch": sum(h["train_seconds"] for h in history) / len(history),
                   "train_seconds": run_seconds(sub)["train"],
                   "seconds_to_95pct": time_to_fraction(history)}
        folder.seconds.update({f"{miner}.{name}": value for name, value in seconds.items()})
        rows.append(row)
        timed.append({**row, **seconds})
        log.info("miner %s: test mAP@all %.4f", miner, metrics["map@all"])
    save_json(run / "study.json", {"loss": config.training.loss,
                                   "margin": config.training.margin, "rows": rows})
    (run / "study.md").write_text(markdown_table(
        ["miner", "test mAP@all", "test kNN@10", "val mAP@all", "s/epoch (train)",
         "s to 95% of best val", "total s", "triplets/batch"],
        [[r["miner"], f"{r['map@all']:.4f}", f"{r['knn_acc@10']:.4f}",
          f"{r['val_map@all']:.4f}", f"{r['seconds_per_epoch']:.2f}",
          f"{r['seconds_to_95pct']:.0f}", f"{r['train_seconds']:.0f}",
          f"{r['triplets_per_batch']:.0f}"] for r in timed]))
    plot_miner_study(curves, timed, run / "study.png",
               f"{config.training.loss}, margin {config.training.margin:g}")
    return rows

