"""``deephash method-study``: the field's hashing methods side by side, under one protocol.

Every method (``--methods``; :data:`deephash.registries.HASHING_METHODS`) learns codes on
the same backbone, the same seeded splits and the same training budget, then is measured
the same way: the sign codes' Hamming ranking on the test protocol, tie-aware mAP@all beside
the index-order mAP@all that most published tables report, precision within Hamming radius
2, and the CPU time of training (or of the shallow coder's fit).

1. **Selection on validation.** Each method's main hyper-parameter
   (:data:`deephash.training.methods.METHOD_GRIDS`: CSQ's λ, OrthoHash's m, DPSH's η, ...)
   is trained at every point of its small grid at ``--selection-bits`` with the first seed
   and scored by its best validation mAP@all (validation queries against the training
   part); the test set is never read. Ties keep the paper's value (the grid's first point).
   The chosen value then serves every code length and seed -- a trim (one selection per
   method, not per code length) that keeps the study within its time; ``methods.json``
   records the grid's scores. Methods without a grid (ITQ, LSH, Zhuang et al.) run with
   their paper's settings.
2. **The table.** Every method at every ``--bits`` once per ``--seeds`` (a seed draws the
   splits and initialises training), each a ``hash`` run folder
   ``<method>/seed-<s>/bits-<K>/``; the table shows each figure's mean over the seeds and
   ± half its spread (max - min).
3. **The yardstick** (``--classifier-codes``): a softmax classifier on the same features,
   once per seed, its class probabilities used as codes (Sablayrolles et al. 2017,
   :mod:`deephash.metrics.classifier_codes`) -- a method that does not beat it has learnt
   little more than the classes.

Writes ``methods.json`` (every row, every seed's figures, the selection grids) and
``methods.md``. ``--resume`` continues every sub-run (finished ones are only
re-evaluated), so an interrupted study picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from deephash.command_configs import HashConfig, MethodStudyConfig
from deephash.config import variant
from deephash.fileio import save_json
from deephash.machine import combined_load
from deephash.pipeline.protocol import open_protocol
from deephash.registries import HASHING_METHODS
from deephash.studies.hash import run_hash
from deephash.studies.run_folder import open_run, run_load, sub_run_flags, train_time
from deephash.studies.tables import load_footnote, markdown_table, mean_cell, time_cell
from deephash.studies.train import run_train
from deephash.training.config import TrainConfig
from deephash.training.methods import METHOD_GRIDS, HyperGrid, classifier_training
from deephash.validation import validate

log = logging.getLogger(__name__)

__all__ = ["MethodStudyConfig", "run_method_study", "summarise"]

#: the test figures averaged over seeds (the first is the table's headline)
FIGURES = ("map@all", "map@all_index_order", "prec@r2")
#: the yardstick's figures in a softmax run's metrics.json, and the names they take here
CLASSIFIER_FIGURES = {"classifier_codes_map@all": "map@all",
                      "classifier_codes_map@all_index_order": "map@all_index_order"}
CLASSIFIER_ROW = "classifier codes"


def run_method_study(config: MethodStudyConfig) -> dict[str, Any]:
    validate(config)
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite, sweep=("methods", "bits", "seeds"))
    open_protocol(config)  # every image's header, the data's digest: before the folder
    with folder:
        return _compare(config, folder.path)


def _hash_config(config: MethodStudyConfig, method: str, out: Path, bits: tuple[int, ...],
                 seed: int, settings: dict[str, Any]) -> HashConfig:
    """The ``hash`` run of ``method`` at ``bits`` with ``seed`` and the grid point's
    ``settings`` (a training overlay), into ``out``."""
    return variant(config, HashConfig, out=str(out), overwrite=False, seed=seed,
                   hashing={"method": method, "bits": bits}, training=settings)


def _select(config: MethodStudyConfig, method: str, grid: HyperGrid,
            run: Path) -> tuple[float | None, list[dict[str, Any]]]:
    """Train every grid point of ``method`` at the selection length and first seed into
    ``run/select/<point>/`` (validation only); the chosen value and each point's scores."""
    scored = []
    for value in grid.values:
        out = run / "select" / grid.label(value)
        hashed = _hash_config(config, method, out, (config.selection_bits,), config.seeds[0],
                              grid.settings(value))
        resume, overwrite = sub_run_flags(config.training.resume, out)
        training = HASHING_METHODS.create(method, dataclasses.replace(
            hashed.training, embedding_dim=config.selection_bits, codes=True, resume=resume))
        summary = run_train(variant(hashed, TrainConfig, out=str(out), overwrite=overwrite,
                                    training=training), evaluate_test=False)
        scored.append({"value": value, "label": grid.label(value),
                       "val_map@all": summary["val_map@all"]})
        log.info("%s, %s: validation mAP@all %.4f", method, grid.label(value),
                 summary["val_map@all"])
    best = max(range(len(scored)), key=lambda i: (scored[i]["val_map@all"], -i))
    return scored[best]["value"], scored


def _train_time(folder: Path) -> dict[str, Any]:
    """A finished run's ``train_cpu_s`` (wall-clock, and ``train_wall`` true, where it kept
    no CPU time) and ``load``."""
    seconds, wall = train_time(folder)
    return {"train_cpu_s": seconds, "train_wall": wall, "load": run_load(folder)}


def _compare(config: MethodStudyConfig, run: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    selections: dict[str, Any] = {}
    for method in config.methods:
        grid = METHOD_GRIDS.get(method)
        chosen: float | None = None
        if grid is not None and len(grid.values) > 1:
            chosen, scored = _select(config, method, grid, run / method)
            selections[method] = {"option": grid.name, "chosen": grid.label(chosen),
                                  "grid": scored}
        settings = grid.settings(chosen) if grid is not None else {}
        per_bits: dict[int, list[dict[str, Any]]] = {bits: [] for bits in config.bits}
        for seed in config.seeds:
            out = run / method / f"seed-{seed}"
            for metrics in run_hash(_hash_config(config, method, out, config.bits, seed,
                                                 settings)):
                per_bits[metrics["bits"]].append(
                    {**metrics, "seed": seed, **_train_time(out / f"bits-{metrics['bits']}")})
        for bits, per_seed in per_bits.items():
            rows.append({"method": method, "bits": bits,
                         "selected": grid.label(chosen) if grid is not None else "—",
                         **summarise(per_seed, FIGURES), "per_seed": per_seed})
            log.info("%s, %d bits: test mAP@all %.4f", method, bits, rows[-1]["map@all"])
    if config.classifier_codes:
        rows.append(_yardstick(config, run))
    record = {"protocol": config.data.protocol, "seeds": list(config.seeds),
              "bits": list(config.bits), "selection_bits": config.selection_bits,
              "selections": selections, "rows": rows}
    save_json(run / "methods.json", record)
    (run / "methods.md").write_text(methods_table(rows, len(config.seeds)))
    return record


def _yardstick(config: MethodStudyConfig, run: Path) -> dict[str, Any]:
    """The classifier-output codes' row: one softmax run per seed."""
    per_seed = []
    for seed in config.seeds:
        out = run / "classifier" / f"seed-{seed}"
        resume, overwrite = sub_run_flags(config.training.resume, out)
        metrics = run_train(variant(config, TrainConfig, out=str(out), overwrite=overwrite,
                                    seed=seed, training=dataclasses.replace(
                                        classifier_training(config.training), resume=resume)))
        per_seed.append({**{name: metrics[key] for key, name in CLASSIFIER_FIGURES.items()},
                         "seed": seed, **_train_time(out)})
    bits = int(metrics["classifier_codes_bits"])
    return {"method": CLASSIFIER_ROW, "bits": bits, "selected": "—",
            **summarise(per_seed, tuple(CLASSIFIER_FIGURES.values())), "per_seed": per_seed}


def summarise(per_seed: list[dict[str, Any]], figures: tuple[str, ...]) -> dict[str, Any]:
    """Each figure's mean over the seeds and ``<figure>_spread`` (max - min); the mean
    training CPU time, whether any seed's time is wall-clock (``train_wall``) and the
    loads the seeds trained under."""
    summary: dict[str, Any] = {}
    for key in (*figures, "train_cpu_s"):
        values = [float(m[key]) for m in per_seed if key in m]
        if values:
            summary[key] = sum(values) / len(values)
            summary[f"{key}_spread"] = max(values) - min(values)
    summary["train_wall"] = any(m.get("train_wall", False) for m in per_seed)
    summary["loads"] = [m["load"] for m in per_seed if m.get("load")]
    return summary


def methods_table(rows: list[dict[str, Any]], seeds: int) -> str:
    """``methods.md``: one row per method and code length."""
    loads = [load for row in rows for load in row["loads"]]
    return markdown_table(
        ["method", "bits", "selected", "test mAP@all", "mAP@all (index order)", "prec@r2",
         "train CPU s"],
        [[row["method"], row["bits"], row["selected"], mean_cell(row, "map@all", seeds),
          mean_cell(row, "map@all_index_order", seeds), mean_cell(row, "prec@r2", seeds),
          time_cell(row.get("train_cpu_s", float("nan")), digits=1,
                    wall=row.get("train_wall", False), load=combined_load(row["loads"]))]
         for row in rows]) + load_footnote(loads)
