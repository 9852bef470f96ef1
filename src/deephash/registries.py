"""Every registry's table: component name -> ``"module:attribute"`` of its factory.

This module imports no torch, numpy or faiss: the command line fills ``choices``, prints
``--help`` and ``deephash list`` from these names, and checks options before any work
starts; a component's module is imported when the component is first built. The packages
re-export their registry (``deephash.losses.LOSSES`` is ``LOSSES`` here).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from deephash.errors import ConfigError
from deephash.registry import Lazy, Registry

if TYPE_CHECKING:
    import torch

    from deephash.backbones.base import Backbone
    from deephash.data.protocols import Splits
    from deephash.distances import Distance
    from deephash.index.base import RetrievalIndex
    from deephash.losses.base import BatchLoss
    from deephash.miners.base import Miner
    from deephash.runtimes.base import Runtime
    from deephash.training.config import TrainingConfig
    from deephash.training.loggers import Logger
    from deephash.training.schedules import Schedule
    from deephash.training.trainer import EpochRecord

_TORCHVISION = "deephash.backbones.torchvision_models:torchvision_backbone"

#: ``create_backbone(name, weights)``; ``timm:<NAME>`` stands for any timm model, whose
#: factory takes ``(model_name, weights)`` (see ``parse_backbone``)
BACKBONES: Registry[Backbone] = Registry("backbone", {
    "efficientnet_lite0": "deephash.backbones.efficientnet_lite:efficientnet_lite0",
    **{name: Lazy(_TORCHVISION, (name,))
       for name in ("resnet18", "resnet34", "resnet50", "vgg16", "vgg19")},
    "timm:<NAME>": "deephash.backbones.timm_models:timm_backbone",
})
#: ``--backbone`` help: the names, and what ``timm:NAME`` means
BACKBONE_HELP = (
    "backbone: efficientnet_lite0 (default), resnet18, resnet34, resnet50, vgg16, vgg19, or "
    "timm:NAME, any model of timm (timm:vit_small_patch14_dinov2.lvd142m, timm:convnext_tiny; "
    "its pooled pre-logits and its preprocessing, docs/backbones.md)")
#: what a timm model name may hold: architecture, then an optional ``.tag``
_TIMM_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?")


def parse_backbone(name: str) -> tuple[str, str | None]:
    """``"timm:resnet50"`` -> ``("timm:<NAME>", "resnet50")``; ``"resnet18"`` ->
    ``("resnet18", None)``.

    Raises ``ConfigError`` naming the known backbones for anything else (whether timm has
    the model is checked where timm is imported: ``deephash.backbones.timm_models``).
    """
    if name in BACKBONES and "<" not in name:
        return name, None
    prefix, colon, model = name.partition(":")
    if colon and f"{prefix}:<NAME>" in BACKBONES:
        if _TIMM_NAME.fullmatch(model):
            return f"{prefix}:<NAME>", model
        raise ConfigError(f"backbone {name!r}: name a timm model after {prefix}: (e.g. "
                          f"{prefix}:resnet50 or {prefix}:vit_small_patch14_dinov2.lvd142m)")
    raise ConfigError(f"unknown backbone {name!r}; known: "
                      f"{', '.join(n for n in BACKBONES if '<' not in n)}, timm:NAME (any timm "
                      "model, e.g. timm:resnet50)")


def check_backbone(name: str) -> None:
    """``--backbone``: a name ``parse_backbone`` reads."""
    parse_backbone(name)


_FIELD_PROTOCOL = "deephash.data.protocols.field:field_protocol"

#: ``make_splits(name, labels, is_test, seed, classes=, parts=)``; factories take
#: ``(labels, is_test, seed, *, classes, parts)``, ``unseen:<N>`` also ``n_held_out``
#: (see ``parse_protocol``); ``--protocol auto`` picks one by what the data brings
PROTOCOLS: Registry[Splits] = Registry("protocol", {
    "cifar10": "deephash.data.protocols.standard:train_test_protocol",
    "dtsh-1": "deephash.data.protocols.standard:dtsh_setting1",
    "holdout": "deephash.data.protocols.standard:holdout_protocol",
    "lists": "deephash.data.protocols.field:lists_protocol",
    **{name: Lazy(_FIELD_PROTOCOL, (name,))
       for name in ("nus-wide-21", "coco", "imagenet-100", "cifar10-54k")},
    "unseen:<N>": "deephash.data.protocols.unseen:unseen_protocol",
})
#: ``--protocol`` help: what each name means
PROTOCOL_HELP = (
    "evaluation protocol (docs/protocols.md): auto = lists when the data brings its own "
    "parts, cifar10 when it has an official test part, else holdout; cifar10 (query = test "
    "part, database = training part), dtsh-1, cifar10-54k, holdout (a stratified 10 %% as "
    "queries), lists (the data's own train/query/database parts), nus-wide-21, coco, "
    "imagenet-100 (the field's sizes and mAP@k), unseen:N (N classes held out of training, "
    "queried among themselves)")

#: ``create_loss(name, margin, distance, ...)``; factories take a ``LossSettings``
LOSSES: Registry[BatchLoss] = Registry("loss", {
    name: f"deephash.losses:build_{name}"
    for name in ("facenet", "hoffer", "contrastive", "dtsh", "softmax",
                 "csq", "orthohash", "greedyhash", "dpsh", "hashnet", "dsh")
})

#: ``create_miner(name, margin, seed)``
MINERS: Registry[Miner] = Registry("miner", {
    "batch-all": "deephash.miners:build_batch_all",
    "batch-hard": "deephash.miners:build_batch_hard",
    "semi-hard": "deephash.miners.pair_negative:semi_hard",
    "random-hard": "deephash.miners.pair_negative:random_hard",
    "distance-weighted": "deephash.miners:build_distance_weighted",
    "curriculum": "deephash.miners.pair_negative:curriculum",
    "offline": "deephash.miners:build_offline",
    "all-pairs": "deephash.miners:build_all_pairs",
    "hard-pairs": "deephash.miners:build_hard_pairs",
    "offline-pairs": "deephash.miners:build_offline_pairs",
})

# every distance is one class of deephash.distances (hamming too, scored on sign codes
# only); the two registries name those that offer a role (tests/test_distances.py checks)
_DISTANCE_CLASSES = {
    "euclidean": "deephash.distances:EuclideanDistance",
    "sqeuclidean": "deephash.distances:SquaredEuclideanDistance",
    "cosine": "deephash.distances:CosineDistance",
    "neg-half-inner": "deephash.distances:NegativeHalfInnerProduct",
}

#: differentiable distances inside the losses and miners (``--train-distance``)
BATCH_DISTANCES: Registry[Distance] = Registry("distance", _DISTANCE_CLASSES)

#: distances of the chunked evaluators (``--distance``)
DISTANCES: Registry[Distance] = Registry("distance", {
    name: _DISTANCE_CLASSES[name] for name in ("euclidean", "sqeuclidean", "cosine")
})

#: index kinds; ``<M>``/``<h>``/``<nlist>`` stand for a positive integer (``BHNSW32``), and
#: ``<faiss-factory>`` for any faiss factory string over float embeddings (``IVF1024,Flat``,
#: ``IVF4096,PQ32``, ``HNSW32``, ``PQ16``), see ``parse_index``
INDEXES: Registry[RetrievalIndex] = Registry("index", {
    "BFlat-numpy": "deephash.index.hamming:HammingIndex",
    "BFlat": "deephash.index.faiss_indexes:FaissBinaryIndex",
    "BHNSW<M>": "deephash.index.faiss_indexes:FaissBinaryIndex",
    "BMIH<h>": "deephash.index.faiss_indexes:FaissBinaryIndex",
    "BIVF<nlist>": "deephash.index.faiss_indexes:FaissBinaryIndex",
    "Flat": "deephash.index.float_index:FloatIndex",
    "<faiss-factory>": "deephash.index.float_index:FloatIndex",
})

#: ``deephash hash --method``: the method's training configuration from the user's one
HASHING_METHODS: Registry[TrainingConfig] = Registry("hashing method", {
    "dtsh": "deephash.training.methods:dtsh_method",
    "zhuang": "deephash.training.methods:zhuang_training",
    "csq": "deephash.training.methods:csq_training",
    "orthohash": "deephash.training.methods:orthohash_training",
    "greedyhash": "deephash.training.methods:greedyhash_training",
    "dpsh": "deephash.training.methods:dpsh_method",
    "hashnet": "deephash.training.methods:hashnet_method",
    "dsh": "deephash.training.methods:dsh_method",
    # shallow baselines: a linear coder fitted on the frozen features, no training
    **{name: Lazy("deephash.training.methods:shallow_method", (name,)) for name in ("itq", "lsh")},
})

#: frozen-extraction runtimes (``--runtime``); factories take ``(backbone, image_size,
#: precision, exports, device)``, see :func:`deephash.runtimes.build_runtime`
RUNTIMES: Registry[Runtime] = Registry("runtime", {
    "torch": "deephash.runtimes.torch_eager:TorchRuntime",
    "openvino": "deephash.runtimes.openvino:OpenVinoRuntime",
    "onnxruntime": "deephash.runtimes.onnxruntime:OnnxRuntime",
})
#: ``--runtime`` values: ``auto`` picks one of RUNTIMES (``deephash.runtimes.resolve_runtime``)
RUNTIME_CHOICES = ("auto", *RUNTIMES.names())
#: ``--precision`` of frozen extraction: float32, or bfloat16 where the runtime offers it
PRECISIONS = ("fp32", "bf16")

#: hash-code regularisers (``--regularizers NAME=WEIGHT``): ``create(name, u)`` is the
#: scalar term of relaxed codes ``u`` ``(B, K)``, see :mod:`deephash.hashing.regularizers`
REGULARIZERS: Registry[torch.Tensor] = Registry("regulariser", {
    name: f"deephash.hashing.regularizers:{name}" for name in ("quantization", "balance")
})

#: schedule kinds (``--schedules NAME=KIND:START[:END[:EVERY]]``): ``create(kind, start,
#: end, every)``, see :mod:`deephash.training.schedules`
SCHEDULES: Registry[Schedule] = Registry("schedule kind", {
    "constant": "deephash.training.schedules:ConstantSchedule",
    "step": "deephash.training.schedules:StepSchedule",
    "linear": "deephash.training.schedules:LinearSchedule",
    "cosine": "deephash.training.schedules:CosineSchedule",
})

#: training procedures (``--procedure``): the function that fits a ``TrainingSetup``
PROCEDURES: Registry[list[EpochRecord]] = Registry("procedure", {
    "triplet": "deephash.training.trainer:fit",
    "zhuang": "deephash.training.zhuang_trainer:fit_zhuang",
    # not trained: the linear coder fitted on the frozen features instead (its class)
    "itq": "deephash.hashing.shallow:ITQ",
    "lsh": "deephash.hashing.shallow:LSH",
})

#: experiment logs of a training run (``--log``): ``create(name, target)`` with a
#: ``LogTarget``; ``csv`` (``RUN_DIR/history.csv``) is always written, the others are
#: optional extras of the package (``pip install 'deephash[tensorboard]'``), see
#: :mod:`deephash.training.loggers`
LOGGERS: Registry[Logger] = Registry("logger", {
    "csv": "deephash.training.loggers:CsvLogger",
    "tensorboard": "deephash.training.loggers:TensorBoardLogger",
    "mlflow": "deephash.training.mlflow_logger:MlflowLogger",
})

#: ``--mode``: what trains, and from which inputs. Names only: a mode is not one object
#: but a choice read where the model's inputs and weights are set up
#: (``deephash.studies.train``, ``deephash.training.checkpoint``)
TRAINING_MODES = ("frozen", "partial", "finetune")

#: the head's output activation (``--activation``, ``deephash.training.head``)
ACTIVATIONS = ("none", "tanh", "sign", "sign-identity")

#: how a loss averages its per-tuple values (``deephash.losses.base.reduce``)
REDUCTIONS = ("mean", "mean_active", "sum")

#: ``--format`` (``deephash.data.open.open_dataset``; ``--dataset`` is its old name)
DATASET_KINDS = ("auto", "cifar10", "mnist", "fashion-mnist", "imagefolder", "classfolders",
                 "lists", "csv", "unlabelled")

#: what ``deephash list`` shows
LISTABLE: dict[str, Any] = {
    "backbones": BACKBONES, "protocols": PROTOCOLS, "losses": LOSSES, "miners": MINERS,
    "train-distances": BATCH_DISTANCES, "distances": DISTANCES, "indexes": INDEXES,
    "hashing-methods": HASHING_METHODS, "regularizers": REGULARIZERS, "schedules": SCHEDULES,
    "procedures": PROCEDURES, "training-modes": TRAINING_MODES, "activations": ACTIVATIONS,
    "reductions": REDUCTIONS, "datasets": DATASET_KINDS, "runtimes": RUNTIMES,
    "loggers": LOGGERS,
}


#: the largest ``<M>`` (HNSW links per code) or ``<h>`` (MIH sub-tables) of an index
#: factory string: HNSW keeps 2M links per code at its base level (256: 2 KiB a code, the
#: codes themselves are a few bytes), MIH at most one table per bit of a code
INDEX_PARAMETER_MAX = 256
#: the most lists of a binary IVF index (``BIVF<nlist>``)
IVF_LISTS_MAX = 1 << 20


def parse_index(factory: str) -> tuple[str, int | None]:
    """``"BHNSW32"`` -> ``("BHNSW<M>", 32)``; ``"BFlat"`` -> ``("BFlat", None)``;
    ``"IVF1024,PQ16"`` -> ``("<faiss-factory>", None)`` (faiss builds it, at a width its
    ``PQ<m>`` divide).

    Raises ``ConfigError`` naming the known kinds for anything else, and the bound for a
    parameter above :data:`INDEX_PARAMETER_MAX` (``BHNSW99999999``; ``<nlist>``:
    :data:`IVF_LISTS_MAX`).
    """
    if factory in INDEXES and "<" not in factory:
        return factory, None
    match = re.fullmatch(r"([A-Za-z]+)(\d+)", factory)
    if match:
        for name in INDEXES.names(match.group(1) + "<*>"):
            digits = match.group(2)
            most = IVF_LISTS_MAX if name.endswith("<nlist>") else INDEX_PARAMETER_MAX
            value = int(digits) if len(digits) < 10 else most + 1
            if value > most:
                raise ConfigError(f"index {factory!r}: {name[name.index('<'):]} must be at most "
                                  f"{most} (e.g. BHNSW32, BMIH4, BIVF1024)")
            if value >= 1:
                return name, value
    named = ", ".join(name for name in INDEXES if not name.startswith("<"))
    unknown = (f"unknown index {factory!r}; known: {named} (<M>, <h>: an integer from 1 to "
               f"{INDEX_PARAMETER_MAX}, e.g. BHNSW32, BMIH4) or a faiss factory string over "
               "float embeddings (IVF1024,Flat, IVF4096,PQ32, HNSW32, PQ16)")
    if not re.fullmatch(r"[A-Z][A-Za-z0-9_.,]*", factory) or factory.startswith("B"):
        raise ConfigError(unknown)
    from deephash.index.float_index import check_float_factory  # faiss, only for these
    check_float_factory(factory)  # faiss's reason, with examples, in one line
    return "<faiss-factory>", None


def parse_protocol(name: str) -> tuple[str, int | None]:
    """``"unseen:2"`` -> ``("unseen:<N>", 2)``; ``"cifar10"`` -> ``("cifar10", None)``.

    Raises ``ConfigError`` naming the known protocols for anything else, and the form of N
    for a bad parameter (``unseen:0``, ``unseen:x``); that N leaves two classes to train on
    is checked against the data (``deephash.data.protocols.unseen``).
    """
    if name in PROTOCOLS and "<" not in name:
        return name, None
    prefix, colon, value = name.partition(":")
    if colon and f"{prefix}:<N>" in PROTOCOLS:
        if value.isdigit() and len(value) < 10 and int(value) >= 1:
            return f"{prefix}:<N>", int(value)
        raise ConfigError(f"protocol {name!r}: N must be a whole number of held-out classes, "
                          f"at least 1 (e.g. {prefix}:2)")
    raise ConfigError(f"unknown protocol {name!r}; known: auto, "
                      f"{', '.join(n for n in PROTOCOLS if '<' not in n)}, unseen:N (N "
                      "held-out classes, e.g. unseen:2)")


def check_protocol(name: str) -> None:
    """``--protocol``: ``auto`` or a protocol ``parse_protocol`` reads."""
    if name != "auto":
        parse_protocol(name)


#: ``--rerank`` of ``deephash search`` and ``deephash serve``
RERANK_HELP = ("codes: ties (results tied in Hamming distance ordered by the model's continuous "
               "outputs), none (Hamming only, ties in a seeded random order) or R (the R "
               "nearest by Hamming ordered by the continuous outputs)")


def parse_rerank(value: str) -> str | int:
    """``--rerank``: ``"ties"`` (order Hamming ties by the continuous outputs), ``"none"``
    (Hamming only, ties at random) or R, a positive integer (order the R nearest by the
    continuous outputs); see :mod:`deephash.index.rerank`. ``ConfigError`` otherwise."""
    value = str(value).strip()
    if value in ("ties", "none"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ConfigError(f"{value!r} is not ties, none or a positive number of candidates; "
                      "use one of those")
