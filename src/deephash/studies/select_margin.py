"""``deephash select-margin``: choose the margin on the validation split, then test once.

Every margin of the grid is trained with the same seed and budget and scored by its best
validation mAP@all (validation queries against the training part). Only the winner's
checkpoint is then evaluated on the test protocol; the test set never influences the
choice. Ties go to the smaller margin.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deephash.config import save_yaml
from deephash.errors import ConfigError
from deephash.fileio import save_json
from deephash.losses import loss_traits
from deephash.studies.run_folder import prepare_run
from deephash.studies.tables import markdown_table
from deephash.studies.train import evaluate_checkpoint, run_train
from deephash.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class SelectMarginConfig(TrainConfig):
    out: str = field(default="runs/select-margin", metadata={"help": "run folder to write"})
    margins: tuple[float, ...] = field(default=(0.05, 0.1, 0.2, 0.4, 0.8), metadata={
        "help": "margin grid"})


def with_margin(config: TrainConfig, margin: float, out: Path) -> TrainConfig:
    training = dataclasses.replace(config.training, margin=margin)
    base = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{**base, "out": str(out), "training": training})


def run_select_margin(config: SelectMarginConfig) -> dict[str, Any]:
    """Train every margin, pick the best on validation, evaluate it on test.

    Writes ``margins.json`` and ``margins.md`` (the table), one sub-run per margin
    (``margin-<m>/``, validation only) and the chosen model's test results at the top.
    """
    if not loss_traits(config.training.loss).uses_margin:
        raise ConfigError(f"loss {config.training.loss!r} has no margin to select; "
                          "use deephash train")
    if not config.margins:
        raise ConfigError("--margins needs at least one value")
    run = prepare_run(config.out, config)
    rows = []
    for margin in config.margins:
        sub = with_margin(config, margin, run / f"margin-{margin:g}")
        summary = run_train(sub, evaluate_test=False)
        rows.append({"margin": margin, **summary})
        log.info("margin %g: validation mAP@all %.4f", margin, summary["val_map@all"])
    chosen = max(rows, key=lambda r: (r["val_map@all"], -r["margin"]))
    save_json(run / "margins.json", {"selected_margin": chosen["margin"], "rows": rows})
    (run / "margins.md").write_text(markdown_table(
        ["margin", "val mAP@all", "best epoch", "train s"],
        [[f"{r['margin']:g}", f"{r['val_map@all']:.4f}", r["best_epoch"],
          f"{r['train_seconds']:.0f}"] for r in rows]))
    final = with_margin(config, chosen["margin"], run)
    save_yaml(final, run / "selected.yaml")
    return evaluate_checkpoint(run, final, run / f"margin-{chosen['margin']:g}" / "best.pt",
                               {"selected_margin": chosen["margin"],
                                "val_map@all": chosen["val_map@all"],
                                "best_epoch": chosen["best_epoch"]})
