"""``deephash train``: a triplet-trained embedding, selected on validation, measured on test.

Writes the baseline's run-folder layout (config, splits, metrics.json with the same keys,
PR curve, t-SNE, embeddings) plus ``best.pt`` (the checkpoint with the best validation
mAP@all, carrying its configuration), ``last.pt`` (for ``--resume``), ``history.json``,
``history.csv`` (and the ``--log`` backends' logs: :mod:`deephash.training.loggers`) and
``curves.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from deephash.data import ImageDataset, Splits
from deephash.devices import resolve_device
from deephash.distributed import broadcast, init_from_environment, ranks
from deephash.errors import ConfigError
from deephash.fileio import save_json
from deephash.hashing.shallow import shallow_coder
from deephash.labels import LabelSet
from deephash.machine import load_summary
from deephash.pipeline.evaluate import (
    database_code_health,
    evaluate_checkpoint,
    evaluate_on_test,
    load_trained,
    method_title,
)
from deephash.pipeline.protocol import open_protocol, skipped_run_details, write_splits
from deephash.pipeline.setup import parse_weights, training_setup
from deephash.studies.run_folder import RunFolder, open_run
from deephash.studies.shallow import run_shallow
from deephash.training.checkpoint import read_checkpoint, save_checkpoint
from deephash.training.config import TrainConfig
from deephash.training.epochs import EpochRecord
from deephash.training.loggers import open_run_log
from deephash.training.rounds import Steps, finish
from deephash.training.trainer import TrainingSetup, fit_steps, validation_scores
from deephash.training.zhuang_trainer import fit_zhuang_steps
from deephash.validation import validate
from deephash.viz.training_curves import plot_training_curves

log = logging.getLogger(__name__)

#: the steps shared with the other commands live in :mod:`deephash.pipeline`; these names
#: stay importable from here
__all__ = ["database_code_health", "evaluate_checkpoint", "evaluate_on_test",
           "frozen_validation", "load_trained", "method_title", "parse_weights", "run_train",
           "train_steps", "warn_if_worse"]


#: frozen validation figures already computed in this process (a study's runs share their
#: features and splits; on CIFAR-10 each computation is ~10 s of a 2-core CPU)
_FROZEN_FIGURES: dict[tuple[object, ...], dict[str, float]] = {}


def _frozen_key(config: TrainConfig, views: list[np.ndarray], labels: LabelSet,
                splits: Splits) -> tuple[object, ...] | None:
    """What the frozen figures depend on: the cached feature files (path, size, mtime), the
    splits, the labels and the distance; ``None`` when the features are not memory-mapped
    from the cache (``--no-cache``: nothing identifies them)."""
    files = [getattr(view, "filename", None) for view in views]
    if any(name is None for name in files):
        return None
    digest = hashlib.sha256()
    for part in (splits.train, splits.val, labels[splits.train].as_array(),
                 labels[splits.val].as_array()):
        digest.update(np.ascontiguousarray(part).tobytes())
        digest.update(b"|")
    stats = [os.stat(str(name)) for name in files]
    return (tuple((str(name), stat.st_size, stat.st_mtime_ns)
                  for name, stat in zip(files, stats, strict=True)),
            config.evaluation.distance, digest.hexdigest())


def frozen_validation(config: TrainConfig, features: dict[str, np.ndarray],
                      labels: LabelSet, splits: Splits) -> dict[str, float]:
    """The frozen features' validation figures, the yardstick every trained model must beat:
    validation queries against the training part, ``config.evaluation.distance``, averaged
    over the image and its mirror image like the trained model under test-time flip.
    Computed once per process for the same cached features, splits, labels and distance."""
    flip = config.training.test_time_flip and "hflip" in features
    views = [features["identity"], *([features["hflip"]] if flip else [])]
    key = _frozen_key(config, views, labels, splits)
    if key is not None and key in _FROZEN_FIGURES:
        return dict(_FROZEN_FIGURES[key])
    x = (views[0] + views[1]) / 2 if flip else views[0]
    val_map, val_knn = validation_scores(x[splits.val], x[splits.train], labels[splits.val],
                                         labels[splits.train], config.evaluation.distance)
    figures = finite({"frozen_val_map@all": val_map, "frozen_val_knn_acc@10": val_knn})
    if key is not None:
        _FROZEN_FIGURES[key] = dict(figures)
    return figures


def finite(figures: dict[str, float]) -> dict[str, float]:
    """``figures`` without the NaN ones: the 10-NN accuracy, which multi-label data does not
    define (:mod:`deephash.metrics.knn`), is left out of metrics.json rather than written
    as NaN."""
    return {key: value for key, value in figures.items() if not math.isnan(value)}


def warn_if_worse(summary: dict[str, Any], n_train: int, n_val: int) -> None:
    """Log a warning when the selected epoch scores below the frozen features on
    validation (mAP@all, the selection criterion, or 10-NN accuracy)."""
    worse = [f"{name} {summary[key]:.4f} < {summary['frozen_' + key]:.4f}"
             for name, key in (("mAP@all", "val_map@all"), ("10-NN accuracy", "val_knn_acc@10"))
             if key in summary and "frozen_" + key in summary
             and summary[key] < summary["frozen_" + key]]
    if worse:
        log.warning("WARNING: the trained model (epoch %d) is worse on validation than the "
                    "frozen features it starts from (%s; %d training images, %d validation "
                    "queries); more steps (--epochs, --batches-per-epoch), a smaller head "
                    "(--hidden-dims) or the frozen features themselves (deephash baseline) may "
                    "serve better", summary["best_epoch"], "; ".join(worse), n_train, n_val)


def _check_extends(config: TrainConfig, resume_state: dict[str, Any], run: Path) -> None:
    """A resumed run may train longer, never shorter: ``config.yaml`` would say fewer
    epochs than its history and checkpoints hold."""
    trained = int(resume_state.get("epoch", -1)) + 1
    if config.training.epochs < trained:
        raise ConfigError(f"--resume: {run} has trained {trained} epochs; --epochs "
                          f"{config.training.epochs} would leave its config.yaml saying fewer "
                          f"than its history holds: give --epochs {trained} or more (a resumed "
                          "run may only train longer), or use --overwrite or another --out")


def run_train(config: TrainConfig, evaluate_test: bool = True) -> dict[str, Any]:
    """Train into ``config.out``; returns ``metrics.json`` (test) or the validation summary.

    With ``evaluate_test=False`` (margin selection) the test protocol is not touched.
    """
    return finish(train_steps(config, evaluate_test))


def train_steps(config: TrainConfig, evaluate_test: bool = True) -> Steps[dict[str, Any]]:
    """:func:`run_train`, yielding after each epoch, so that a study can train several runs
    in turn (:func:`deephash.training.rounds.in_turn`); nothing runs before the first step.
    """
    validate(config)
    device = init_from_environment(resolve_device(config.extraction.device))
    if ranks().world > 1 and config.training.procedure == "zhuang":
        raise ConfigError("Zhuang et al.'s procedure runs in one process; start it without "
                          "torchrun")
    if shallow_coder(config.training.procedure) is not None:  # fitted, not trained
        if ranks().world > 1:
            raise ConfigError(f"--procedure {config.training.procedure} is fitted in one "
                              "process in seconds; start it without torchrun")
        return run_shallow(config, evaluate_test)
    run = Path(config.out)
    folder = open_run(run, config, resume=config.training.resume, overwrite=config.overwrite)
    resume_state = None
    if config.training.resume and ranks().main:
        if not (run / "last.pt").is_file():
            raise ConfigError(f"--resume: {run / 'last.pt'} does not exist; start without it")
        resume_state = read_checkpoint(run / "last.pt")
        _check_extends(config, resume_state, run)
    if config.training.resume:  # the ranks need not share a file system
        resume_state = broadcast(resume_state)
    dataset, splits = open_protocol(config)
    setup, features = training_setup(config, dataset, splits, device)
    frozen = (frozen_validation(config, features, dataset.labels, splits) if ranks().main
              else {})
    del features
    if resume_state is not None:
        load_trained(setup, resume_state)
    folder.details.update(skipped_run_details(dataset))
    with folder:  # every input is checked: only now is the run folder written
        folder.device = str(device)
        return (yield from _train(folder, config, setup, dataset, splits, frozen, resume_state,
                                  evaluate_test))


def _train(folder: RunFolder, config: TrainConfig, setup: TrainingSetup, dataset: ImageDataset,
           splits: Splits, frozen: dict[str, float], resume_state: dict[str, Any] | None,
           evaluate_test: bool) -> Steps[dict[str, Any]]:
    """The writing part of :func:`run_train`, in its opened run folder."""
    run, main = folder.path, ranks().main
    if main:
        write_splits(run, splits, dataset)
    cfg = config.training
    if cfg.procedure == "zhuang":
        log.info("training Zhuang et al.'s two-step hashing (margin %g bits), %d stages",
                 cfg.margin, cfg.epochs)
    elif setup.loss.every_pair:
        log.info("training %s on every pair of each batch (no miner), %s mode, %d epochs of %d "
                 "batches of %s", cfg.loss, cfg.mode, cfg.epochs, len(setup.sampler),
                 setup.sampler.shape)
    elif not setup.loss.uses_miner:
        log.info("training a %s classifier on the embedding (no miner), %s mode, %d epochs "
                 "of %d batches of %s", cfg.loss, cfg.mode, cfg.epochs,
                 len(setup.sampler), setup.sampler.shape)
    else:
        log.info("training %s + %s (margin %g), %s mode, %d epochs of %d batches of %s",
                 cfg.loss, cfg.miner, cfg.margin, cfg.mode, cfg.epochs, len(setup.sampler),
                 setup.sampler.shape)

    def save(path: Path, extra: dict[str, Any]) -> None:
        save_checkpoint(path, config, setup.model, loss=setup.loss.state_dict(), **extra)

    steps = (fit_zhuang_steps(setup, cfg.zhuang, cfg.margin, config.seed, run, save,
                              resume_state) if cfg.procedure == "zhuang"
             else fit_steps(setup, run, save, resume_state))
    with open_run_log(config, run, resume_state["history"] if resume_state else (),
                      writes=main) as logs:
        records = yield from logs.follow(steps)
        summary = _finish(folder, config, setup, dataset, splits, frozen, records,
                          evaluate_test)
        logs.final(summary, "metrics" if evaluate_test else "validation",
                   records[-1].epoch if records else 0)
    return summary


def _finish(folder: RunFolder, config: TrainConfig, setup: TrainingSetup, dataset: ImageDataset,
            splits: Splits, frozen: dict[str, float], records: list[EpochRecord],
            evaluate_test: bool) -> dict[str, Any]:
    """After the last epoch: the best epoch's model, ``history.json``, ``curves.png``,
    ``validation.json`` and, with ``evaluate_test``, the test results."""
    run, main, cfg = folder.path, ranks().main, config.training
    history = [dataclasses.asdict(h) for h in records]
    best = broadcast(read_checkpoint(run / "best.pt") if main else None)
    load_trained(setup, best)
    best_epoch = int(best["epoch"])
    summary = {"val_map@all": float(best["val_map"]), "best_epoch": best_epoch + 1,
               **finite({"val_knn_acc@10": history[best_epoch]["val_knn"]}), **frozen}
    folder.seconds["train"] = history[-1]["elapsed_seconds"] if history else 0.0
    cpu = history[-1]["elapsed_cpu_seconds"] if history else 0.0
    if math.isfinite(cpu):  # nan: resumed from a history older than CPU times
        folder.cpu_seconds["train"] = cpu
    folder.load = load_summary([h["load_average"] for h in history],
                               waits=[h.get("train_cpu_wait_seconds", math.nan) for h in history],
                               cpus=[h["train_cpu_seconds"] for h in history])
    if main:
        save_json(run / "history.json", history)
        plot_training_curves(history, run / "curves.png", method_title(cfg.loss, cfg.miner,
                                                                       cfg.margin))
        warn_if_worse(summary, len(splits.train), len(splits.val))
        save_json(run / "validation.json", summary)
    if evaluate_test:
        summary = evaluate_on_test(run, config, setup, dataset, splits, summary)
    return summary

