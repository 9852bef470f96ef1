"""A trained model on the test protocol: its weights reloaded (from a checkpoint), the
query and database images embedded, and the results written by
:func:`deephash.pipeline.results.write_results`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.data import ImageDataset, Splits
from deephash.devices import resolve_device
from deephash.distributed import ranks
from deephash.hashing.codes import binarize, pack_codes
from deephash.hashing.health import code_health
from deephash.labels import LabelSet
from deephash.losses import SoftmaxLoss, loss_options, loss_traits
from deephash.metrics.classifier_codes import evaluate_classifier_codes
from deephash.pipeline.config import EvalConfig
from deephash.pipeline.protocol import open_protocol, write_splits
from deephash.pipeline.results import evaluation_spec, write_results
from deephash.pipeline.setup import training_setup
from deephash.training.checkpoint import read_checkpoint
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.trainer import TrainingSetup, embed

log = logging.getLogger(__name__)


def method_title(loss: str, miner: str, margin: float | None = None) -> str:
    """``facenet + semi-hard, margin 0.2``; ``softmax classifier`` (no miner, no margin);
    ``dsh, every pair, margin 96`` (a pairwise method: no miner); ``csq, class codes``."""
    traits = loss_traits(loss)
    if traits.every_pair:
        title = f"{loss}, every pair"
        return title if margin is None or not traits.uses_margin else f"{title}, margin {margin:g}"
    if not traits.uses_miner:
        return f"{loss}, class codes" if traits.class_codes else f"{loss} classifier"
    title = f"{loss} + {miner}"
    return title if margin is None or not traits.uses_margin else f"{title}, margin {margin:g}"


def load_trained(setup: TrainingSetup, checkpoint: dict[str, Any]) -> None:
    """The model's weights and the loss's own parameters (the softmax class weights)."""
    setup.model.load_state_dict(checkpoint["model"])
    setup.loss.load_state_dict(checkpoint.get("loss", {}))


def evaluate_on_test(run: Path, config: TrainConfig, setup: TrainingSetup, dataset: ImageDataset,
                     splits: Splits, extra: dict[str, Any]) -> dict[str, Any]:
    """Embed the query and database images with ``setup.model`` and write the test results
    (every rank embeds its share; rank 0 writes and returns the metrics, the others
    ``extra``). A softmax model adds its classifier's accuracy and the figures of its
    classifier-output codes (:func:`classifier_code_metrics`)."""
    rows = np.union1d(splits.query, splits.database)
    vectors = np.zeros((len(dataset), config.training.embedding_dim), dtype=np.float32)
    vectors[rows] = embed(setup.model, setup.inputs, rows, setup.device,
                          test_time_flip=setup.test_time_flip)
    if not ranks().main:
        return extra
    if isinstance(setup.loss, SoftmaxLoss):
        if not splits.held_out:  # queries of held-out classes: no class it knows is right
            extra = {**extra, "classifier_acc": setup.loss.accuracy(
                torch.from_numpy(vectors[splits.query]).to(setup.device),
                setup.labels[splits.query])}
        # Sablayrolles et al.'s yardstick: the predicted class as the code
        extra = {**extra, **classifier_code_metrics(setup.loss, vectors, dataset.labels, splits,
                                                    config.evaluation, setup.device)}
    if config.training.codes:
        extra = {**extra, **database_code_health(vectors[splits.database], len(dataset.classes),
                                                 collapse_remedy(config.training))}
    title = f"{method_title(config.training.loss, config.training.miner)} on {dataset.name}"
    return write_results(run, vectors, dataset, splits, config.evaluation, config.seed, title,
                         extra_metrics=extra, codes=config.training.codes)


def classifier_code_metrics(loss: SoftmaxLoss, vectors: np.ndarray, labels: LabelSet,
                            splits: Splits, cfg: EvalConfig,
                            device: torch.device) -> dict[str, Any]:
    """The classifier-output codes of a softmax model (Sablayrolles et al. 2017,
    :mod:`deephash.metrics.classifier_codes`): every database image stored as its predicted
    class, the queries ranked by their logits (the order of their class probabilities);
    ``vectors`` ``(N, D)`` pool-indexed embeddings. The keys of
    :func:`~deephash.metrics.classifier_codes.evaluate_classifier_codes` prefixed
    ``classifier_codes_`` (``classifier_codes_bits``: the code length).

    Single-label data only: a multi-label image has no one class to store (a sigmoid
    classifier predicts a label set), so there the figures are skipped with a note.
    """
    if not labels.is_single:
        log.info("classifier codes skipped: they store one predicted class per image, and "
                 "these labels are multi-label")
        return {}
    with torch.no_grad():
        logits = loss.classifier(torch.from_numpy(vectors[splits.query]).to(device))
        stored = loss.predict(torch.from_numpy(vectors[splits.database]).to(device))
    figures = evaluate_classifier_codes(
        logits.cpu().numpy(), stored.cpu().numpy(), labels[splits.query],
        labels[splits.database], evaluation_spec(cfg), query_ids=splits.query,
        database_ids=splits.database)
    return {f"classifier_codes_{key}": value for key, value in figures.items()}


def collapse_remedy(training: TrainingConfig) -> str:
    """What to try when ``training``'s codes collapse, for its kind of training: a fitted
    coder (ITQ, LSH) has no training to change; a loss with a margin has the margin and
    its schedules; any other loss its own options."""
    if training.procedure in ("itq", "lsh"):
        return ("train the codes instead of fitting them to the features "
                "(--method hashnet or dpsh), or use fewer bits")
    balance = ("the balance regulariser (--regularizers balance=0.1"
               + (", on by default for DTSH)" if training.loss == "dtsh" else ")"))
    if loss_traits(training.loss).uses_margin:
        return (f"{balance}, a smaller --margin or a margin schedule "
                "(--schedules margin=step:1:16), or more training data")
    return (f"{balance}, a lower --lr, the loss's own options (--loss-options "
            f"{loss_options(training.loss)}), or more training data")


def database_code_health(relaxed: np.ndarray, n_classes: int,
                         remedy: str = "more training data") -> dict[str, Any]:
    """Code-health figures of the database's sign codes (``(N, K)`` relaxed codes), with a
    warning in the log naming ``remedy`` (:func:`collapse_remedy`) when they have
    collapsed."""
    health = code_health(pack_codes(binarize(relaxed)), relaxed.shape[1])
    if problems := health.problems(n_classes):
        log.warning("WARNING: the database codes are collapsing (%s): they use fewer codes "
                    "or bits than they have. Try %s", "; ".join(problems), remedy)
    return health.as_metrics()


def evaluate_checkpoint(run: Path, config: TrainConfig, checkpoint: Path,
                        extra: dict[str, Any]) -> dict[str, Any]:
    """Test results of a saved model (``config`` must be the one it was trained with)."""
    dataset, splits = open_protocol(config)
    write_splits(run, splits, dataset)
    setup, _ = training_setup(config, dataset, splits, resolve_device(config.extraction.device))
    load_trained(setup, read_checkpoint(checkpoint))
    return evaluate_on_test(run, config, setup, dataset, splits, extra)
