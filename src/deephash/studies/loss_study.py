"""``deephash loss-study``: the baseline against each loss, each with its selected margin.

Losses with a margin go through :mod:`deephash.studies.select_margin` (grid on
validation, winner tested once); Hoffer & Ailon's loss and the softmax classifier have
none and are trained once. All use the same head, budget and seed, and the study's miner
unless an entry names its own (``contrastive+hard-pairs``: the contrastive loss on the
pairs of the ``hard-pairs`` miner); the softmax classifier uses no miner. Writes
``study.json`` and ``study.md``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deephash.config import variant
from deephash.fileio import save_json
from deephash.losses import loss_traits
from deephash.pipeline.config import BaselineConfig
from deephash.pipeline.evaluate import method_title
from deephash.pipeline.protocol import open_protocol
from deephash.studies.baseline import run_baseline
from deephash.studies.configs import LossStudyConfig, SelectMarginConfig
from deephash.studies.run_folder import open_run, sub_run_flags
from deephash.studies.select_margin import run_select_margin
from deephash.studies.tables import markdown_table, metric_cell
from deephash.studies.train import run_train
from deephash.training.config import TrainConfig
from deephash.validation import validate

__all__ = ["LossStudyConfig", "run_loss_study"]


def run_loss_study(config: LossStudyConfig) -> list[dict[str, Any]]:
    validate(config)
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite,
                      sweep=("losses", "margins", "contrastive_margins"))
    open_protocol(config)  # every image's header, the data's digest: before the folder
    with folder:
        return _compare(config, folder.path)


def _compare(config: LossStudyConfig, run: Path) -> list[dict[str, Any]]:
    resume = config.training.resume  # a resumed study redoes its baseline (features cached)
    baseline = run_baseline(variant(config, BaselineConfig, out=str(run / "baseline"),
                                    overwrite=sub_run_flags(resume, run / "baseline")[1]))
    rows = [{"method": "baseline (frozen features)", "margin": None, **baseline}]
    for entry in config.losses:
        training = config.entry_training(entry)
        loss = training.loss
        out = str(run / entry)
        if loss_traits(loss).uses_margin:  # a select-margin study continues its own sub-runs
            metrics = run_select_margin(variant(config, SelectMarginConfig, out=out,
                                                overwrite=False, training=training,
                                                margins=config.margin_grid(loss)))
            margin = metrics["selected_margin"]
        else:
            again, overwrite = sub_run_flags(resume, run / entry)
            metrics = run_train(variant(config, TrainConfig, out=out, overwrite=overwrite,
                                        training=dataclasses.replace(training, resume=again)))
            margin = None
        rows.append({"method": method_title(loss, training.miner), "margin": margin,
                     **metrics})
    save_json(run / "study.json", {"miner": config.training.miner, "rows": rows})
    (run / "study.md").write_text(markdown_table(
        ["method", "selected margin", "val mAP@all", "test mAP@all", "test mAP@1000",
         "test kNN@1", "test kNN@10", "test P@100", "triplet acc", "pair AUC"],
        [[r["method"], "—" if r["margin"] is None else f"{r['margin']:g}",
          f"{r['val_map@all']:.4f}", f"{r['map@all']:.4f}", f"{r['map@1000']:.4f}",
          metric_cell(r, "knn_acc@1"), metric_cell(r, "knn_acc@10"), f"{r['p@100']:.4f}",
          metric_cell(r, "triplet_acc"), metric_cell(r, "pair_auc")] for r in rows]))
    return rows
