"""Configurations of the commands above training: ``hash``, the studies, ``index``,
``search``, ``pack`` and ``report`` (torch-free, like :mod:`deephash.pipeline.config` and
:mod:`deephash.training.config`). They live below :mod:`deephash.validation`, which
checks them, and below :mod:`deephash.studies`, which runs them and re-exports them
(:mod:`deephash.studies.configs`), so that validation imports nothing of the studies.

Fields carry their checks in metadata: ``choices`` (a registry or tuple), ``min``/``max``
(inclusive) and ``above`` (exclusive) bounds, and ``parse`` (a function that raises
``ConfigError`` for a bad value); :func:`deephash.validation.validate` applies them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from deephash.pipeline.config import MAX_SEED, MAX_WIDTH
from deephash.registries import (
    DATASET_KINDS,
    HASHING_METHODS,
    MINERS,
    RERANK_HELP,
    parse_index,
    parse_rerank,
)
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.methods import dtsh_training


@dataclass
class HashingConfig:
    method: str = field(default="dtsh", metadata={
        "choices": HASHING_METHODS,
        "help": "dtsh: a hash head trained per batch with a triplet loss and miner (DTSH's "
                "likelihood, batch-all and λ 0.1 by default; --loss/--miner replace them); "
                "zhuang: alternate binary code inference and bit prediction; dpsh, hashnet, "
                "dsh: every pair of the batch (pairwise likelihood, weighted likelihood of "
                "tanh(βz), contrastive); csq, orthohash, greedyhash: codes against class "
                "targets (Hadamard centres, cosine-margin class codes, a classifier on "
                "straight-through sign codes); itq, lsh: the shallow baselines (iterative "
                "quantisation, sign random projections) fitted on the frozen features, no "
                "training (docs/methods.md)"})
    bits: tuple[int, ...] = field(default=(48,), metadata={
        "min": 1, "max": MAX_WIDTH, "help": "code lengths: one run folder each"})


@dataclass
class HashConfig(TrainConfig):
    out: str = field(default="runs/hash", metadata={"help": "run folder to write"})
    training: TrainingConfig = field(default_factory=dtsh_training)
    hashing: HashingConfig = field(default_factory=HashingConfig)


@dataclass
class SelectMarginConfig(TrainConfig):
    out: str = field(default="runs/select-margin", metadata={"help": "run folder to write"})
    margins: tuple[float, ...] = field(default=(0.05, 0.1, 0.2, 0.4, 0.8), metadata={
        "above": 0, "help": "margin grid"})


@dataclass
class LossStudyConfig(TrainConfig):
    out: str = field(default="runs/loss-study", metadata={"help": "run folder to write"})
    losses: tuple[str, ...] = field(default=("facenet", "hoffer", "contrastive",
                                             "contrastive+hard-pairs", "softmax"), metadata={
        "help": "losses to compare: LOSS (with --miner) or LOSS+MINER"})
    margins: tuple[float, ...] = field(default=(0.05, 0.1, 0.2, 0.4, 0.8), metadata={
        "above": 0, "help": "margin grid of the triplet margin loss (facenet)"})
    contrastive_margins: tuple[float, ...] = field(default=(0.5, 1.0, 1.5, 2.0), metadata={
        "above": 0, "help": "margin grid of the contrastive loss (a distance, not a gap)"})

    def entry_training(self, entry: str) -> TrainingConfig:
        """``LOSS`` (with ``--miner``) or ``LOSS+MINER`` -> that entry's training config."""
        loss, _, miner = entry.partition("+")
        return dataclasses.replace(self.training, loss=loss, miner=miner or self.training.miner)

    def margin_grid(self, loss: str) -> tuple[float, ...]:
        """The margins ``loss`` is selected over (a loss without a margin ignores them)."""
        return self.contrastive_margins if loss == "contrastive" else self.margins


@dataclass
class MinerStudyConfig(TrainConfig):
    out: str = field(default="runs/miner-study", metadata={"help": "run folder to write"})
    miners: tuple[str, ...] = field(default=(), metadata={
        "choices": MINERS, "help": "miners to compare (default: every miner that serves --loss)"})
    interleave: bool = field(default=False, metadata={
        "help": "train the miners in turn, one epoch of each (same scores as one after the "
                "other; a drift of the machine's speed falls on all alike)"})


DEFAULT_VARIANTS = ("margin=step:1:16", "none", "quantization=step:0.01:0.16")


@dataclass
class ScheduleStudyConfig(HashConfig):
    out: str = field(default="runs/schedule-study", metadata={"help": "run folder to write"})
    training: TrainingConfig = field(
        default_factory=lambda: dataclasses.replace(dtsh_training(), margin=16.0))
    variants: tuple[str, ...] = field(default=DEFAULT_VARIANTS, metadata={
        "help": "schedule sets to compare: 'none' (the fixed --margin and regulariser "
                "weights) or NAME=KIND:START[:END[:EVERY]] joined with '+'"})
    seeds: tuple[int, ...] = field(default=(0,), metadata={
        "min": 0, "max": MAX_SEED,
        "help": "seeds (splits and training); each variant runs once per seed"})


#: the methods a method study compares by default: every hashing method but Zhuang et
#: al.'s alternating procedure (its code inference over every training image per stage is
#: minutes where the others take seconds on frozen features; name it to include it)
STUDY_METHODS = ("dtsh", "dpsh", "hashnet", "dsh", "csq", "orthohash", "greedyhash", "itq",
                 "lsh")


@dataclass
class MethodStudyConfig(TrainConfig):
    out: str = field(default="runs/method-study", metadata={"help": "run folder to write"})
    training: TrainingConfig = field(default_factory=dtsh_training)
    methods: tuple[str, ...] = field(default=STUDY_METHODS, metadata={
        "choices": HASHING_METHODS, "help": "hashing methods to compare"})
    bits: tuple[int, ...] = field(default=(16, 32, 48, 64), metadata={
        "min": 1, "max": MAX_WIDTH, "help": "code lengths: every method at each"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={
        "min": 0, "max": MAX_SEED,
        "help": "seeds (splits and training): every method and code length once per seed; "
                "the table shows the mean and the spread"})
    selection_bits: int = field(default=48, metadata={
        "min": 1, "max": MAX_WIDTH,
        "help": "code length at which each method's main hyper-parameter is selected on "
                "validation (first seed), then used at every length"})
    classifier_codes: bool = field(default=True, metadata={
        "help": "add the yardstick row: a softmax classifier's outputs as codes "
                "(Sablayrolles et al. 2017), once per seed"})


def check_index(factory: str) -> None:
    """``auto`` or an index factory string (:func:`deephash.registries.parse_index`)."""
    if factory != "auto":
        parse_index(factory)


@dataclass
class IndexConfig:
    checkpoint: str = field(default="", metadata={"help": "a trained model's best.pt"})
    data_dir: str | None = field(default=None, metadata={
        "help": "images to index, labelled or not: any data set --format reads (image or "
                "class folders, list files, a CSV file, a folder of unlabelled images at any "
                "depth, CIFAR-10, MNIST) or a file written by deephash pack"})
    dataset: str = field(default="auto", metadata={
        "flag": "--format", "choices": DATASET_KINDS,
        "help": "data set kind; auto detects it from the files (a tree of photos with none "
                "in its top folder: --format unlabelled; docs/data.md)"})
    image_root: str | None = field(default=None, metadata={
        "help": "folder the image paths of list files or a CSV are relative to"})
    out: str = field(default="runs/index", metadata={"help": "index folder to write"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace the index already in --out (never one holding images added to it, "
                "a run, the data or the cache)"})
    index: str = field(default="auto", metadata={
        "parse": check_index,
        "help": "BFlat-numpy, BFlat, BHNSW<M>, BMIH<h>, BIVF<nlist> (codes) or a faiss factory "
                "string over embeddings: Flat (exact), IVF1024,Flat, IVF4096,PQ32, HNSW32, "
                "PQ16, ...; auto: BFlat for a hashing model, Flat for an embedding model "
                "(docs/scale-indexes.md)"})
    nprobe: int | None = field(default=None, metadata={
        "min": 1, "help": "IVF indexes: lists scanned per query, saved with the index "
                          "(default 1; search --nprobe overrides it)"})
    ef_search: int | None = field(default=None, metadata={
        "min": 1, "help": "HNSW indexes: candidates kept per query, saved with the index "
                          "(default 16; search --ef-search overrides it)"})
    train_sample: int | None = field(default=None, metadata={
        "min": 1, "help": "most vectors an index that needs training (IVF, PQ) is trained "
                          "on, a seeded sample (default 256 per IVF list, at least 65,536)"})
    recall_queries: int = field(default=1000, metadata={
        "min": 0, "help": "approximate indexes: sampled items whose recall@10 against "
                          "exact search is logged and kept in index.json (0: skip)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "feature cache folder (default $DEEPHASH_CACHE or ~/.cache/deephash)"})
    cache: bool = field(default=True, metadata={"help": "read and write the feature cache"})
    add: str | None = field(default=None, metadata={
        "help": "add this folder's images to the index already in --out, as one append "
                "segment (docs/scale-appends.md); --checkpoint defaults to the index's"})


@dataclass
class SearchConfig:
    image: str = field(default="", metadata={"positional": True, "help": "query image file"})
    index: str = field(default="runs/index", metadata={"help": "index folder"})
    k: int = field(default=10, metadata={"flag": "-k", "min": 1, "help": "results to return"})
    show: str | None = field(default=None, metadata={
        "help": "save a PNG of the query beside its results"})
    label: str | None = field(default=None, metadata={
        "help": "the query's class, or its classes separated by commas (default: its folder "
                "name, if that is a class): results that share none are framed red in --show"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "the model that built the index, when it is no longer where index.json "
                "says (a moved or copied run's best.pt)"})
    rerank: str = field(default="ties", metadata={"parse": parse_rerank, "help": RERANK_HELP})
    nprobe: int | None = field(default=None, metadata={
        "min": 1, "help": "IVF indexes: lists scanned per query (default: as indexed)"})
    ef_search: int | None = field(default=None, metadata={
        "min": 1, "help": "HNSW indexes: candidates kept per query (default: as indexed)"})
    json: bool = field(default=False, metadata={
        "help": "print the results as one JSON object (query, k, hits: rank, item, path, "
                "labels, distance, relevant; ties) instead of a table"})


@dataclass
class PackConfig:
    data_dir: str = field(default="", metadata={
        "positional": True, "help": "data set to pack: any kind --data-dir takes (image or "
                                    "class folders, list files, a CSV file, unlabelled "
                                    "images, CIFAR-10, MNIST) or a pack"})
    file: str = field(default="", metadata={"positional": True, "help": "pack file to write"})
    dataset: str = field(default="auto", metadata={
        "flag": "--format", "aliases": ("--dataset",), "choices": DATASET_KINDS,
        "help": "data set kind; auto detects it from the files (docs/data.md)"})
    image_root: str | None = field(default=None, metadata={
        "help": "folder the image paths of list files or a CSV are relative to"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace an existing FILE (only a pack)"})


@dataclass
class ReportConfig:
    runs: tuple[str, ...] = field(default=(), metadata={
        "positional": True, "help": "run folders (baseline, train, hash, studies); every "
                                    "finished run at or under them is reported"})
    out: str = field(default="runs/report", metadata={
        "help": "folder to write report.html and report.md into"})
    title: str = field(default="deephash report", metadata={"help": "the report's title"})
    queries: int = field(default=6, metadata={
        "min": 0, "help": "test queries in the retrieval gallery (the same for every run)"})
    k: int = field(default=10, metadata={"flag": "-k", "min": 1,
                                         "help": "results per query in the gallery"})
    seed: int = field(default=0, metadata={"min": 0, "max": MAX_SEED,
                                           "help": "seed of the gallery's queries"})
