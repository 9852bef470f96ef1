"""``deephash schedule-study``: hyperparameter schedules of a hashing loss, compared fairly.

Each variant is a set of schedules (``margin=step:1:16``; several joined with ``+``;
``none`` for fixed values) applied to the same hashing configuration: the same code length,
epochs, batches, seeds and splits, every variant scored on its sign codes (Hamming,
tie-aware), its epoch chosen on validation. With several seeds, each variant is trained
once per seed and the table shows the mean and the spread (max - min). Writes
``study.json``, ``study.md`` and ``study.png`` (validation mAP@all of the sign codes and
the margin per epoch).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from deephash.config import variant as config_variant
from deephash.fileio import save_json
from deephash.pipeline.protocol import open_protocol
from deephash.studies.configs import DEFAULT_VARIANTS, HashConfig, ScheduleStudyConfig
from deephash.studies.hash import run_hash
from deephash.studies.run_folder import open_run
from deephash.studies.tables import markdown_table, mean_cell
from deephash.training.schedules import parse_variant
from deephash.validation import validate
from deephash.viz.studies import plot_schedule_study

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_VARIANTS", "ScheduleStudyConfig", "parse_variant", "run_schedule_study"]

METRICS = ("val_map@all", "map@all", "prec@r2", "knn_acc@1", "map@all_index_order")


def _folder_name(variant: str) -> str:
    return "fixed" if variant == "none" else variant.replace("=", "-").replace(":", "_")


def run_schedule_study(config: ScheduleStudyConfig) -> list[dict[str, Any]]:
    validate(config)  # one code length, variants and seeds given
    parsed = {variant: parse_variant(variant) for variant in config.variants}
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite, sweep=("seeds", "variants"))
    open_protocol(config)  # every image's header, the data's digest: before the folder
    with folder:
        return _compare(config, parsed, folder.path)


def _compare(config: ScheduleStudyConfig, parsed: dict[str, tuple[str, ...]],
             run: Path) -> list[dict[str, Any]]:
    """Each variant per seed as a hash study in ``run/<variant>/seed-<s>/`` (a resumed
    study resumes them), then ``study.json``, ``study.md`` and ``study.png``."""
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[dict[str, Any]]] = {}
    for variant, schedules in parsed.items():
        per_seed = []
        for seed in config.seeds:
            out = run / _folder_name(variant) / f"seed-{seed}"
            sub = config_variant(config, HashConfig, out=str(out), overwrite=False,
                                 seed=seed, training={"schedules": schedules})
            (metrics,) = run_hash(sub)
            per_seed.append(metrics)
            if variant not in curves:  # the plot shows the first seed's curves
                history_file = out / f"bits-{metrics['bits']}" / "history.json"
                curves[variant] = json.loads(history_file.read_text())
        row: dict[str, Any] = {"variant": variant, "seeds": list(config.seeds)}
        for key in METRICS:
            values = [m[key] for m in per_seed]
            row[key] = sum(values) / len(values)
            row[f"{key}_spread"] = max(values) - min(values)
        row["per_seed"] = per_seed
        rows.append(row)
        log.info("schedule %s: test mAP@all %.4f", variant, row["map@all"])
    training = config.training
    save_json(run / "study.json", {"loss": training.loss, "margin": training.margin,
                                   "regularizers": list(training.regularizers),
                                   "bits": config.hashing.bits[0], "rows": rows})

    (run / "study.md").write_text(markdown_table(
        ["schedules", "val mAP@all", "test mAP@all", "prec@r2", "kNN@1",
         "mAP@all (index order)"],
        [[row["variant"], *(mean_cell(row, key, len(config.seeds)) for key in METRICS)]
         for row in rows]))
    plot_schedule_study(curves, run / "study.png",
                        f"{training.loss}, {config.hashing.bits[0]} bits, seed "
                        f"{config.seeds[0]}")
    return rows
