"""A :class:`~deephash.training.trainer.TrainingSetup` from a ``TrainConfig``: the model,
its inputs (cached features, activations or images), the loss, the miner, the sampler and
the optimizer, every input checked before any training starts."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from deephash.backbones import create_backbone
from deephash.data import ImageDataset, Splits
from deephash.data.augment import augmented_views
from deephash.devices import decoding_workers
from deephash.distances import scoring_distance
from deephash.distributed import check_batch
from deephash.errors import ConfigError
from deephash.features import transform_spec
from deephash.hashing.regularizers import get_regularizer
from deephash.labels import as_label_set
from deephash.losses import create_loss, loss_traits
from deephash.miners import create_miner
from deephash.pipeline.features import load_features
from deephash.training.config import TrainConfig
from deephash.training.inputs import AugmentedFeatures, FeatureInputs, ImageInputs
from deephash.training.model import build_model, partial_split
from deephash.training.optimizer import build_optimizer
from deephash.training.pixel_pool import PixelPoolInputs
from deephash.training.sampler import build_sampler
from deephash.training.schedules import parse_schedule
from deephash.training.trainer import TrainingSetup


def training_setup(config: TrainConfig, dataset: ImageDataset, splits: Splits,
                   device: torch.device) -> tuple[TrainingSetup, dict[str, np.ndarray]]:
    """The training loop's inputs, and the pool's frozen backbone features per view
    (``{"identity": (N, D)}``, plus ``"hflip"`` when mirrored views are used)."""
    cfg = config.training
    labels = as_label_set(dataset.labels)  # (N,) ids or a label set, whatever the data set has
    miner = create_miner(cfg.miner, cfg.margin, config.seed)
    uses_miner = loss_traits(cfg.loss).uses_miner
    sampler = build_sampler(cfg, labels[splits.train], config.seed,  # refuses batches
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
                       num_classes=len(dataset.classes), embedding_dim=cfg.embedding_dim,
                       options=cfg.loss_options)
    loss.check_miner(miner)  # before any training starts
    loss.to(device)
    optimizer = build_optimizer(cfg, model, loss)  # flushes subnormals after each step
    return TrainingSetup(
        model=model, inputs=inputs,
        loss=loss, miner=miner, sampler=sampler,
        labels=labels, train=splits.train, val=splits.val, optimizer=optimizer,
        epochs=cfg.epochs, device=device,
        eval_distance=scoring_distance(config.evaluation.distance, cfg.codes).name,
        regularizers=parse_weights(cfg.regularizers),
        schedules=dict(parse_schedule(text) for text in cfg.schedules),
        test_time_flip=cfg.test_time_flip, validate_every=cfg.validate_every), features


def parse_weights(items: tuple[str, ...]) -> dict[str, float]:
    """``("quantization=0.01", ...)`` -> ``{"quantization": 0.01}`` (names validated)."""
    weights: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"bad regulariser {item!r}; write NAME=WEIGHT, e.g. "
                              "quantization=0.01") from None
        if not sep:
            raise ConfigError(f"bad regulariser {item!r}; write NAME=WEIGHT")
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"bad regulariser {item!r}: its weight must be a finite number "
                              ">= 0")
        get_regularizer(name)
        if name in weights:
            raise ConfigError(f"--regularizers names {name!r} twice; give each regulariser "
                              "once")
        weights[name] = weight
    return weights
