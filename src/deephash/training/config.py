"""Configuration of triplet training (``deephash train``); torch-free, like
:mod:`deephash.pipeline.config` (``choices``, ``min``, ``above`` are checked by
:func:`deephash.validation.validate`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from deephash.pipeline.config import MAX_WIDTH, BaselineConfig
from deephash.registries import (
    ACTIVATIONS,
    BATCH_DISTANCES,
    LOGGERS,
    LOSSES,
    MINERS,
    PROCEDURES,
    REDUCTIONS,
    REGULARIZERS,
    SCHEDULES,
    TRAINING_MODES,
)


@dataclass
class ZhuangConfig:
    triplets_per_image: int = field(default=10, metadata={
        "min": 1, "help": "zhuang: triplets sampled per training image for code inference"})
    sweeps: int = field(default=2, metadata={
        "min": 1, "help": "zhuang: code-inference sweeps per stage"})
    block_size: int = field(default=4096, metadata={
        "min": 1, "help": "zhuang: images updated together in code inference"})
    epochs_per_stage: int = field(default=3, metadata={
        "min": 1, "help": "zhuang: passes of bit-prediction training per stage"})


@dataclass
class TrainingConfig:
    loss: str = field(default="facenet", metadata={
        "choices": LOSSES,
        "help": "facenet (margin), hoffer (softmax ratio), contrastive (pairs), dtsh (codes) "
                "or softmax (a classifier on the embedding; no miner)"})
    miner: str = field(default="semi-hard", metadata={
        "choices": MINERS,
        "help": "triplets: batch-all, batch-hard, semi-hard, random-hard, distance-weighted, "
                "curriculum, offline; pairs (contrastive loss): all-pairs, hard-pairs, "
                "offline-pairs"})
    margin: float = field(default=0.2, metadata={"help": "margin of the loss and the miner"})
    loss_options: tuple[str, ...] = field(default=(), metadata={
        "help": "NAME=VALUE: the loss's own hyper-parameters, e.g. lambda=0.001 (csq), s=8 "
                "m=0.3 (orthohash), alpha (greedyhash, dsh, hashnet), eta (dpsh), gamma p "
                "step (hashnet); a wrong name lists the loss's options (docs/methods.md)"})
    distance: str = field(default="euclidean", metadata={
        "flag": "--train-distance", "choices": BATCH_DISTANCES,
        "help": "distance inside the loss and the miner"})
    reduction: str = field(default="mean_active", metadata={
        "choices": REDUCTIONS, "help": "mean, mean_active (over non-zero losses) or sum"})
    mode: str = field(default="frozen", metadata={
        "choices": TRAINING_MODES,
        "help": "frozen: train a head on cached features; partial: also train the backbone's "
                "last --trainable-blocks blocks, from their cached input activations; "
                "finetune: also train the whole backbone on augmented images"})
    trainable_blocks: int = field(default=1, metadata={
        "min": 0, "help": "partial: how many of the backbone's last blocks train (0: none, "
                          "today's frozen head; see deephash.backbones.split)"})
    epochs: int = field(default=15, metadata={"min": 1, "help": "training epochs"})
    batch_classes: int = field(default=10, metadata={
        "min": 2, "help": "P: classes per batch (all of them where fewer are present)"})
    batch_samples: int = field(default=16, metadata={
        "min": 1, "help": "K: images per class per batch"})
    batches_per_epoch: int = field(default=0, metadata={
        "min": 0, "help": "batches per epoch (0: training images / batch size)"})
    small_classes: str = field(default="replace", metadata={
        "choices": ("replace", "error"),
        "help": "a class with fewer than K images: sample with replacement, or refuse"})
    lr: float = field(default=1e-3, metadata={
        "above": 0, "help": "Adam learning rate (cosine schedule)"})
    backbone_lr: float = field(default=1e-4, metadata={
        "min": 0, "help": "finetune: backbone learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"min": 0, "help": "Adam weight decay"})
    embedding_dim: int = field(default=128, metadata={"min": 1, "max": MAX_WIDTH,
                                                      "help": "output dimension"})
    hidden_dims: tuple[int, ...] = field(default=(512,), metadata={
        "min": 1, "max": MAX_WIDTH, "repeats": True,
        "help": "hidden widths of the head's MLP (none: a linear head)"})
    normalize: bool = field(default=True, metadata={"help": "L2-normalise the embeddings"})
    dropout: float = field(default=0.0, metadata={
        "min": 0, "below": 1, "help": "dropout after hidden layers"})
    activation: str = field(default="none", metadata={
        "choices": ACTIVATIONS,
        "help": "output activation: none (embeddings), tanh or sign (straight-through, tanh's "
                "gradient) codes, sign-identity (straight-through, gradient unchanged)"})
    regularizers: tuple[str, ...] = field(default=(), metadata={
        "help": f"NAME=WEIGHT terms added to the loss: {', '.join(REGULARIZERS)}"})
    schedules: tuple[str, ...] = field(default=(), metadata={
        "help": "NAME=KIND:START[:END[:EVERY]] for margin or a regulariser weight, e.g. "
                f"margin=step:1:16 (kinds: {', '.join(SCHEDULES)})"})
    flip_augment: bool = field(default=True, metadata={
        "help": "frozen: use cached mirrored-view features as augmentation; finetune: flips"})
    views: int = field(default=0, metadata={
        "min": 0, "help": "frozen, partial: K seeded augmented views per training image (random "
                          "resized crop and mirror), extracted once into the feature cache "
                          "and sampled as augmentation with the image and its mirror"})
    validate_every: int = field(default=1, metadata={
        "min": 1, "help": "validate (and keep best.pt) every N epochs and after the last: "
                          "embedding a large training part can cost more than an epoch of "
                          "training"})
    test_time_flip: bool = field(default=False, metadata={
        "help": "evaluate (validation and test) on the mean of each image's embedding and its "
                "mirror image's; frozen mode reads cached mirrored-view features"})
    procedure: str = field(default="triplet", metadata={
        "choices": PROCEDURES, "help": "triplet: loss + online miner per batch; zhuang: "
                                       "alternate code inference and bit prediction (epochs "
                                       "= stages); itq, lsh: a linear coder fitted on the "
                                       "frozen features instead of training (with --codes)"})
    zhuang: ZhuangConfig = field(default_factory=ZhuangConfig)
    codes: bool = field(default=False, metadata={
        "help": "the outputs are hash codes: validate and test on their signs (Hamming)"})
    resume: bool = field(default=False, metadata={
        "help": "continue an interrupted run from RUN_DIR/last.pt"})
    log: tuple[str, ...] = field(default=(), metadata={
        "choices": LOGGERS,
        "help": "experiment logs of each epoch's figures and the final ones besides "
                "RUN_DIR/history.csv (csv: always written): tensorboard (RUN_DIR/tensorboard/), "
                "mlflow (a file store in RUN_DIR/mlruns, or --mlflow-uri); each is an extra: "
                "pip install 'deephash[tensorboard]' (docs/logging.md)"})
    mlflow_uri: str | None = field(default=None, metadata={
        "help": "--log mlflow: an MLflow tracking URI (sqlite:///FILE.db, http://HOST:PORT) or "
                "a folder for a file store (default: RUN_DIR/mlruns)"})


@dataclass
class TrainConfig(BaselineConfig):
    out: str = field(default="runs/train", metadata={"help": "run folder to write"})
    training: TrainingConfig = field(default_factory=TrainingConfig)
