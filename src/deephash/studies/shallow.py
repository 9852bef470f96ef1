"""A shallow hashing run: ITQ or LSH fitted on frozen features where training would be.

``deephash hash --method itq|lsh`` (and ``train --procedure itq|lsh --codes``) writes the
run folder of a trained hashing run: ``config.yaml``, ``run.json`` (the fit's time as
``seconds.train``), ``splits.json``, ``validation.json``, ``metrics.json`` (the same test
figures, tie-aware and index-order mAP, code health), ``pr_curve``, ``tsne.png`` and
``codes/{query,database}.npz``; with ``--log`` the final figures go to its backends (no
epochs: no ``history.csv``). The coder (:mod:`deephash.hashing.shallow`) is fitted on
the frozen features of the protocol's ``train`` split only, labels unused, then codes every
pool image; ``--test-time-flip`` codes the mean of an image's and its mirror image's
features (the mean of their relaxed codes: the coder is linear). Nothing is saved to
reload beyond ``best.pt``: the fitted coder as a linear head (:func:`coder_model`: the
features centred by the coder's mean, then its projection, no hidden layer), so that
``index``, ``search`` and ``serve`` take an ITQ or LSH run like a trained one; a refit with
the same seed gives the same codes in seconds (``--resume`` refits).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch

from deephash.backbones import create_backbone
from deephash.command_configs import HashConfig
from deephash.data import Splits
from deephash.devices import resolve_device
from deephash.fileio import save_json
from deephash.hashing.shallow import LinearCoder, shallow_coder
from deephash.labels import LabelSet
from deephash.pipeline.evaluate import collapse_remedy, database_code_health
from deephash.pipeline.features import load_features
from deephash.pipeline.protocol import open_protocol, skipped_run_details, write_splits
from deephash.pipeline.results import write_results
from deephash.registries import HASHING_METHODS
from deephash.studies.run_folder import open_run
from deephash.training.checkpoint import save_checkpoint
from deephash.training.config import TrainConfig
from deephash.training.evaluation import validation_scores
from deephash.training.loggers import open_run_log
from deephash.training.model import EmbeddingModel, build_model

log = logging.getLogger(__name__)


def check_code_lengths(config: HashConfig, splits: Splits) -> None:
    """Refuse, before any extraction or folder, a ``--bits`` that a shallow ``--method``
    cannot fit on the training split (:func:`deephash.validation.validate` has checked
    them against the feature dimension; nothing to check for a method that trains)."""
    coder = shallow_coder(HASHING_METHODS.create(config.hashing.method,
                                                 config.training).procedure)
    if coder is not None:
        for bits in config.hashing.bits:
            coder.check(bits, n_train=len(splits.train))


def run_shallow(config: TrainConfig, evaluate_test: bool = True) -> dict[str, Any]:
    """Fit ``config.training.procedure``'s coder into ``config.out``; returns
    ``metrics.json`` (or, without ``evaluate_test``, the validation figures). ``config``
    has been validated."""
    coder_class = shallow_coder(config.training.procedure)
    if coder_class is None:
        raise ValueError(f"{config.training.procedure!r} is not a shallow coder")
    device = resolve_device(config.extraction.device)
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite)
    dataset, splits = open_protocol(config)
    backbone = create_backbone(config.backbone.name, config.backbone.weights)
    coder_class.check(config.training.embedding_dim, backbone.num_features, len(splits.train))
    folder.details.update(skipped_run_details(dataset))
    with folder:
        run = folder.path
        folder.device = str(device)
        write_splits(run, splits, dataset)
        flip = config.training.test_time_flip
        features = load_features(config, dataset, device, ("identity", "hflip") if flip
                                 else ("identity",), backbone=backbone)
        x = (features["identity"] + features["hflip"]) / 2 if flip else features["identity"]
        # (N, D), memory-mapped from the cache unless mirrored views were averaged
        start, cpu = time.perf_counter(), time.process_time()
        coder = coder_class(config.training.embedding_dim, config.seed).fit(x[splits.train])
        folder.seconds["train"] = time.perf_counter() - start
        folder.cpu_seconds["train"] = time.process_time() - cpu
        relaxed = coder.transform(x)  # (N, K): every pool image
        summary = _validation(config, relaxed, x, dataset.labels, splits)
        save_json(run / "validation.json", summary)
        saved, model = coder_model(config, coder)
        save_checkpoint(run / "best.pt", saved, model, epoch=0,
                        val_map=summary["val_map@all"])
        log.info("%s, %d bits, fitted on %d training images in %.1f s: validation mAP@all "
                 "%.4f", coder.name, coder.bits, len(splits.train), folder.seconds["train"],
                 summary["val_map@all"])
        with open_run_log(config, run) as logs:  # no epochs: the final figures only
            if evaluate_test:
                extra = {**summary, **database_code_health(
                    relaxed[splits.database], len(dataset.classes),
                    collapse_remedy(config.training))}
                summary = write_results(run, relaxed, dataset, splits, config.evaluation,
                                        config.seed, f"{coder.name} on {dataset.name}",
                                        extra_metrics=extra, codes=True)
            logs.final(summary, "metrics" if evaluate_test else "validation", 0)
        return summary


def coder_model(config: TrainConfig, coder: LinearCoder) -> tuple[TrainConfig, EmbeddingModel]:
    """A fitted coder as the model a checkpoint holds: ``config`` with a head of no hidden
    layer (no activation, no L2 normalisation: the outputs are the relaxed codes) and that
    head, whose fixed feature mean is the coder's centre and whose linear layer is its
    ``(D, K)`` projection, so ``head(x)`` = ``(x - mean) @ projection`` (float32)."""
    training = dataclasses.replace(config.training, hidden_dims=(), activation="none",
                                   normalize=False, dropout=0.0, codes=True)
    model = build_model(training, coder.projection_.shape[0], None)
    with torch.no_grad():
        model.head.feature_mean.copy_(torch.from_numpy(coder.mean_.astype(np.float32)))
        model.head.feature_std.fill_(1.0)
        linear = model.head.layers[-1]
        assert isinstance(linear, torch.nn.Linear)
        linear.weight.copy_(torch.from_numpy(coder.projection_.T.astype(np.float32)))
        linear.bias.zero_()
    return dataclasses.replace(config, training=training), model.eval()


def _validation(config: TrainConfig, relaxed: np.ndarray, features: np.ndarray, labels: LabelSet,
                splits: Splits) -> dict[str, float]:
    """The codes' validation figures (validation queries against the training part, in
    Hamming distance) beside the frozen features' (``config.evaluation.distance``), the
    keys of a trained run's ``validation.json`` (NaN ones left out)."""
    figures = {}
    for prefix, vectors, distance in (("", relaxed, "hamming"),
                                      ("frozen_", features, config.evaluation.distance)):
        val_map, val_knn = validation_scores(vectors[splits.val], vectors[splits.train],
                                             labels[splits.val], labels[splits.train],
                                             distance)
        figures[f"{prefix}val_map@all"] = val_map
        if not np.isnan(val_knn):
            figures[f"{prefix}val_knn_acc@10"] = val_knn
    return figures
