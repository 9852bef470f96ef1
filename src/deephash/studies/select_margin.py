"""``deephash select-margin``: choose the margin on the validation split, then test once.

Every margin of the grid is trained with the same seed and budget and scored by its best
validation mAP@all (validation queries against the training part). Only the winner's
checkpoint is then evaluated on the test protocol; the test set never influences the
choice. Ties go to the smaller margin. The table's training times are CPU time (a margin
trained before deephash kept it shows its wall-clock time, so marked), marked when taken
while the machine's load exceeded its cores (:mod:`deephash.studies.tables`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from deephash.config import variant
from deephash.fileio import save_json
from deephash.pipeline.evaluate import evaluate_checkpoint
from deephash.pipeline.protocol import open_protocol
from deephash.studies.configs import SelectMarginConfig
from deephash.studies.run_folder import (
    open_run,
    run_load,
    save_config,
    sub_run_flags,
    train_time,
)
from deephash.studies.tables import load_footnote, markdown_table, time_cell
from deephash.studies.train import run_train
from deephash.training.config import TrainConfig
from deephash.validation import validate

log = logging.getLogger(__name__)

__all__ = ["SelectMarginConfig", "run_select_margin", "with_margin"]


def with_margin(config: TrainConfig, margin: float, out: Path, resume: bool = False,
                overwrite: bool = False) -> TrainConfig:
    """The ``TrainConfig`` of ``config`` with ``margin``, into ``out``."""
    return variant(config, TrainConfig, out=str(out), overwrite=overwrite,
                   training={"margin": margin, "resume": resume})


def run_select_margin(config: SelectMarginConfig) -> dict[str, Any]:
    """Train every margin, pick the best on validation, evaluate it on test.

    Writes ``margins.json`` and ``margins.md`` (the table), one sub-run per margin
    (``margin-<m>/``, validation only) and the chosen model's test results at the top.
    """
    validate(config)  # a loss with a margin, a non-empty grid
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite, sweep=("margins",))
    open_protocol(config)  # every image's header, the data's digest: before the folder
    with folder:
        return _select(config, folder.path)


def _select(config: SelectMarginConfig, run: Path) -> dict[str, Any]:
    rows, times, loads = [], [], []
    for margin in config.margins:
        out = run / f"margin-{margin:g}"
        sub = with_margin(config, margin, out, *sub_run_flags(config.training.resume, out))
        summary = run_train(sub, evaluate_test=False)
        rows.append({"margin": margin, **summary})
        loads.append(run_load(out))
        seconds, wall = train_time(out)  # from run.json only
        times.append(time_cell(seconds, wall=wall, load=loads[-1]))
        log.info("margin %g: validation mAP@all %.4f", margin, summary["val_map@all"])
    chosen = max(rows, key=lambda r: (r["val_map@all"], -r["margin"]))
    save_json(run / "margins.json", {"selected_margin": chosen["margin"], "rows": rows})
    (run / "margins.md").write_text(markdown_table(
        ["margin", "val mAP@all", "best epoch", "train CPU s"],
        [[f"{r['margin']:g}", f"{r['val_map@all']:.4f}", r["best_epoch"], time]
         for r, time in zip(rows, times, strict=True)]) + load_footnote(loads))
    final = with_margin(config, chosen["margin"], run)
    save_config(final, run / "selected.yaml")
    return evaluate_checkpoint(run, final, run / f"margin-{chosen['margin']:g}" / "best.pt",
                               {"selected_margin": chosen["margin"],
                                "val_map@all": chosen["val_map@all"],
                                "best_epoch": chosen["best_epoch"]})
