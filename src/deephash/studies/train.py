"""``deephash train``: a triplet-trained embedding, selected on validation, measured on test.

Writes the baseline's run-folder layout (config, splits, metrics.json with the same keys,
PR curve, t-SNE, embeddings) plus ``best.pt`` (the checkpoint with the best validation
mAP@all, carrying its configuration), ``last.pt`` (for ``--resume``), ``history.json``
and ``curves.png``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import create_backbone
from deephash.data import ImageDataset, Splits
from deephash.data.augment import augmented_views
from deephash.devices import decoding_workers, resolve_device
from deephash.distances import scoring_distance
from deephash.distributed import broadcast, check_batch, init_from_environment, ranks
from deephash.errors import ConfigError
from deephash.features import transform_spec
from deephash.fileio import save_json
from deephash.hashing.codes import binarize, pack_codes
from deephash.hashing.health import code_health
from deephash.hashing.regularizers import get_regularizer
from deephash.losses import SoftmaxLoss, create_loss, loss_traits
from deephash.miners import create_miner
from deephash.studies.baseline import load_features, open_protocol
from deephash.studies.report import write_results
from deephash.studies.run_folder import RunFolder, open_run, write_splits
from deephash.training.checkpoint import read_checkpoint, save_checkpoint
from deephash.training.config import TrainConfig
from deephash.training.inputs import AugmentedFeatures, FeatureInputs, ImageInputs
from deephash.training.model import build_model, partial_split
from deephash.training.optimizer import build_optimizer
from deephash.training.pixel_pool import PixelPoolInputs
from deephash.training.sampler import build_sampler
from deephash.training.schedules import parse_schedule
from deephash.training.trainer import TrainingSetup, embed, fit, validation_scores
from deephash.training.zhuang_trainer import fit_zhuang
from deephash.validation import validate
from deephash.viz.training_curves import plot_training_curves

log = logging.getLogger(__name__)


def _setup(config: TrainConfig, dataset: ImageDataset, splits: Splits,
           device: torch.device) -> tuple[TrainingSetup, dict[str, np.ndarray]]:
    """The training loop's inputs, and the pool's frozen backbone features per view."""
    cfg = config.training
    miner = create_miner(cfg.miner, cfg.margin, config.seed)
    uses_miner = loss_traits(cfg.loss).uses_miner
    sampler = build_sampler(cfg, dataset.labels[splits.train], config.seed,  # refuses batches
                            miner.tuple_size if uses_miner else None,  # the data cannot fill,
                            dataset.classes, needs_positives=uses_miner)  # before extraction
    check_batch(sampler.batch_size)  # and that the ranks cannot share
    cached = cfg.mode in ("frozen", "partial")  # the model reads cached features
    extraction = dataclasses.replace(
        config.extraction, flip_views=(cfg.flip_augment or cfg.test_time_flip) and cached)
    config_views = dataclasses.replace(config, extraction=extraction)
    features = load_features(config_views, dataset, device)  # the full backbone's
    backbone = prefix = None
    model_inputs = features  # what the model reads: features, or activations (partial)
    if cfg.mode == "partial":
        prefix, backbone = partial_split(config)
        model_inputs = load_features(config_views, dataset, device, backbone=prefix)
    augmented = None
    if cfg.views and cached:  # the training images' augmented views, once
        drawn = load_features(config, dataset, device, augmented_views(cfg.views),
                              subset=splits.train, backbone=prefix)
        augmented = AugmentedFeatures(splits.train, list(drawn.values()))
    torch.manual_seed(config.seed)  # after extraction, which may draw from torch's generator
    inputs: FeatureInputs | ImageInputs | PixelPoolInputs
    if cfg.mode == "finetune":  # small images decoded once onto the device, else per batch
        backbone = create_backbone(config.backbone.name, config.backbone.weights)
        spec = transform_spec(backbone, config.backbone.image_size)
        inputs = PixelPoolInputs.load(dataset, spec, cfg.flip_augment, config.seed,
                                      backbone.num_features, device) or ImageInputs(
            dataset, spec, cfg.flip_augment,
            decoding_workers(config.extraction.num_workers, device), backbone.num_features)
    else:
        inputs = FeatureInputs(model_inputs["identity"], model_inputs.get("hflip"),
                               config.seed, augment=cfg.flip_augment, augmented=augmented)
    model = build_model(cfg, features["identity"].shape[1], backbone)
    model.head.set_feature_statistics(torch.from_numpy(features["identity"][splits.train]))
    model.to(device)
    loss = create_loss(cfg.loss, cfg.margin, cfg.distance, cfg.reduction,
                       num_classes=len(dataset.classes), embedding_dim=cfg.embedding_dim)
    loss.check_miner(miner)  # before any training starts
    loss.to(device)
    optimizer = build_optimizer(cfg, model, loss)  # flushes subnormals after each step
    return TrainingSetup(
        model=model, inputs=inputs,
        loss=loss, miner=miner, sampler=sampler,
        labels=dataset.labels, train=splits.train, val=splits.val, optimizer=optimizer,
        epochs=cfg.epochs, device=device,
        eval_distance=scoring_distance(config.evaluation.distance, cfg.codes).name,
        regularizers=parse_weights(cfg.regularizers),
        schedules=dict(parse_schedule(text) for text in cfg.schedules),
        test_time_flip=cfg.test_time_flip, validate_every=cfg.validate_every), features


def frozen_validation(config: TrainConfig, features: dict[str, np.ndarray],
                      labels: np.ndarray, splits: Splits) -> dict[str, float]:
    """The frozen features' validation figures, the yardstick every trained model must beat:
    validation queries against the training part, ``config.evaluation.distance``, averaged
    over the image and its mirror image like the trained model under test-time flip."""
    x = features["identity"]
    if config.training.test_time_flip and "hflip" in features:
        x = (x + features["hflip"]) / 2
    val_map, val_knn = validation_scores(x[splits.val], x[splits.train], labels[splits.val],
                                         labels[splits.train], config.evaluation.distance)
    return {"frozen_val_map@all": val_map, "frozen_val_knn_acc@10": val_knn}


def warn_if_worse(summary: dict[str, Any], n_train: int, n_val: int) -> None:
    """Log a warning when the selected epoch scores below the frozen features on
    validation (mAP@all, the selection criterion, or 10-NN accuracy)."""
    worse = [f"{name} {summary[key]:.4f} < {summary['frozen_' + key]:.4f}"
             for name, key in (("mAP@all", "val_map@all"), ("10-NN accuracy", "val_knn_acc@10"))
             if summary[key] < summary["frozen_" + key]]
    if worse:
        log.warning("WARNING: the trained model (epoch %d) is worse on validation than the "
                    "frozen features it starts from (%s; %d training images, %d validation "
                    "queries); more steps (--epochs, --batches-per-epoch), a smaller head "
                    "(--hidden-dims) or the frozen features themselves (deephash baseline) may "
                    "serve better", summary["best_epoch"], "; ".join(worse), n_train, n_val)


def method_title(loss: str, miner: str, margin: float | None = None) -> str:
    """``facenet + semi-hard, margin 0.2``; ``softmax classifier`` (no miner, no margin)."""
    traits = loss_traits(loss)
    if not traits.uses_miner:
        return f"{loss} classifier"
    title = f"{loss} + {miner}"
    return title if margin is None or not traits.uses_margin else f"{title}, margin {margin:g}"


def parse_weights(items: tuple[str, ...]) -> dict[str, float]:
    """``("quantization=0.01", ...)`` -> ``{"quantization": 0.01}`` (names validated)."""
    weights = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"bad regulariser {item!r}; write NAME=WEIGHT, e.g. "
                              "quantization=0.01") from None
        if not sep:
            raise ConfigError(f"bad regulariser {item!r}; write NAME=WEIGHT")
        get_regularizer(name.strip())
    return weights


def run_train(config: TrainConfig, evaluate_test: bool = True) -> dict[str, Any]:
    """Train into ``config.out``; returns ``metrics.json`` (test) or the validation summary.

    With ``evaluate_test=False`` (margin selection) the test protocol is not touched.
    """
    validate(config)
    device = init_from_environment(resolve_device(config.extraction.device))
    if ranks().world > 1 and config.training.procedure == "zhuang":
        raise ConfigError("Zhuang et al.'s procedure runs in one process; start it without "
                          "torchrun")
    run = Path(config.out)
    folder = open_run(run, config, resume=config.training.resume, overwrite=config.overwrite)
    resume_state = None
    if config.training.resume and ranks().main:
        if not (run / "last.pt").is_file():
            raise ConfigError(f"--resume: {run / 'last.pt'} does not exist; start without it")
        resume_state = read_checkpoint(run / "last.pt")
    if config.training.resume:  # the ranks need not share a file system
        resume_state = broadcast(resume_state)
    dataset, splits = open_protocol(config)
    setup, features = _setup(config, dataset, splits, device)
    frozen = (frozen_validation(config, features, dataset.labels, splits) if ranks().main
              else {})
    del features
    if resume_state is not None:
        load_trained(setup, resume_state)
    with folder:  # every input is checked: only now is the run folder written
        folder.device = str(device)
        return _train(folder, config, setup, dataset, splits, frozen, resume_state, evaluate_test)


def _train(folder: RunFolder, config: TrainConfig, setup: TrainingSetup, dataset: ImageDataset,
           splits: Splits, frozen: dict[str, float], resume_state: dict[str, Any] | None,
           evaluate_test: bool) -> dict[str, Any]:
    """The writing part of :func:`run_train`, in its opened run folder."""
    run, main = folder.path, ranks().main
    if main:
        write_splits(run, splits, dataset)
    cfg = config.training
    if cfg.procedure == "zhuang":
        log.info("training Zhuang et al.'s two-step hashing (margin %g bits), %d stages",
                 cfg.margin, cfg.epochs)
    elif not setup.loss.uses_miner:
        log.info("training a %s classifier on the embedding (no miner), %s mode, %d epochs "
                 "of %d batches of %d x %d", cfg.loss, cfg.mode, cfg.epochs,
                 len(setup.sampler), cfg.batch_classes, cfg.batch_samples)
    else:
        log.info("training %s + %s (margin %g), %s mode, %d epochs of %d batches of %d x %d",
                 cfg.loss, cfg.miner, cfg.margin, cfg.mode, cfg.epochs, len(setup.sampler),
                 cfg.batch_classes, cfg.batch_samples)

    def save(path: Path, extra: dict[str, Any]) -> None:
        save_checkpoint(path, config, setup.model, loss=setup.loss.state_dict(), **extra)

    if cfg.procedure == "zhuang":
        records = fit_zhuang(setup, cfg.zhuang, cfg.margin, config.seed, run, save, resume_state)
    else:
        records = fit(setup, run, save, resume_state)
    history = [dataclasses.asdict(h) for h in records]
    best = broadcast(read_checkpoint(run / "best.pt") if main else None)
    load_trained(setup, best)
    best_epoch = int(best["epoch"])
    summary = {"val_map@all": float(best["val_map"]), "best_epoch": best_epoch + 1,
               "val_knn_acc@10": history[best_epoch]["val_knn"], **frozen}
    folder.seconds["train"] = history[-1]["elapsed_seconds"] if history else 0.0
    if main:
        save_json(run / "history.json", history)
        plot_training_curves(history, run / "curves.png", method_title(cfg.loss, cfg.miner,
                                                                       cfg.margin))
        warn_if_worse(summary, len(splits.train), len(splits.val))
        save_json(run / "validation.json", summary)
    if evaluate_test:
        summary = evaluate_on_test(run, config, setup, dataset, splits, summary)
    return summary


def evaluate_on_test(run: Path, config: TrainConfig, setup: TrainingSetup, dataset: ImageDataset,
                     splits: Splits, extra: dict[str, Any]) -> dict[str, Any]:
    """Embed the query and database images with ``setup.model`` and write the test results
    (every rank embeds its share; rank 0 writes and returns the metrics, the others
    ``extra``)."""
    rows = np.union1d(splits.query, splits.database)
    vectors = np.zeros((len(dataset), config.training.embedding_dim), dtype=np.float32)
    vectors[rows] = embed(setup.model, setup.inputs, rows, setup.device,
                          test_time_flip=setup.test_time_flip)
    if not ranks().main:
        return extra
    if isinstance(setup.loss, SoftmaxLoss):  # the classifier's own test accuracy
        predicted = setup.loss.predict(torch.from_numpy(vectors[splits.query]).to(setup.device))
        extra = {**extra, "classifier_acc": float(
            (predicted.cpu().numpy() == dataset.labels[splits.query]).mean())}
    if config.training.codes:
        extra = {**extra, **database_code_health(vectors[splits.database], len(dataset.classes))}
    title = f"{method_title(config.training.loss, config.training.miner)} on {dataset.name}"
    return write_results(run, vectors, dataset, splits, config.evaluation, config.seed, title,
                         extra_metrics=extra, codes=config.training.codes)


def database_code_health(relaxed: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Code-health figures of the database's sign codes (``(N, K)`` relaxed codes), with a
    warning in the log when they have collapsed."""
    health = code_health(pack_codes(binarize(relaxed)), relaxed.shape[1])
    if problems := health.problems(n_classes):
        log.warning("WARNING: the database codes are collapsing (%s): they use fewer codes "
                    "or bits than they have. Try the balance regulariser (--regularizers "
                    "balance=0.1, on by default for DTSH), a smaller margin or a margin schedule "
                    "(--schedules margin=step:1:16), or more training data", "; ".join(problems))
    return health.as_metrics()


def load_trained(setup: TrainingSetup, checkpoint: dict[str, Any]) -> None:
    """The model's weights and the loss's own parameters (the softmax class weights)."""
    setup.model.load_state_dict(checkpoint["model"])
    setup.loss.load_state_dict(checkpoint.get("loss", {}))


def evaluate_checkpoint(run: Path, config: TrainConfig, checkpoint: Path,
                        extra: dict[str, Any]) -> dict[str, Any]:
    """Test results of a saved model (``config`` must be the one it was trained with)."""
    dataset, splits = open_protocol(config)
    write_splits(run, splits, dataset)
    setup, _ = _setup(config, dataset, splits, resolve_device(config.extraction.device))
    load_trained(setup, read_checkpoint(checkpoint))
    return evaluate_on_test(run, config, setup, dataset, splits, extra)
