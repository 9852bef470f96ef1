"""The configuration every command shares: the data set and its protocol, the backbone, the
feature extraction and the evaluation, and :class:`BaselineConfig`, the base configuration
that every training and study configuration extends (``TrainConfig(BaselineConfig)``).

Torch-free: the command line builds its parser from these classes. ``choices`` name a
registry (:mod:`deephash.registries`) or a tuple; ``min``/``max`` (inclusive) and
``above`` (exclusive) bound a number, or every number of a tuple; both are checked
wherever a config is built (:func:`deephash.validation.validate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deephash.registries import (
    BACKBONE_HELP,
    DATASET_KINDS,
    DISTANCES,
    PRECISIONS,
    PROTOCOL_HELP,
    RUNTIME_CHOICES,
    check_backbone,
    check_protocol,
)

#: the largest seed: numpy's and scikit-learn's generators take 32-bit seeds
MAX_SEED = 2**32 - 1
#: the largest input side in pixels (one 4096 x 4096 image is 200 MB as float32)
MAX_IMAGE_SIZE = 4096
#: the widest embedding, code or hidden layer (60,000 embeddings of 16384 floats: 3.9 GB)
MAX_WIDTH = 16384


@dataclass
class DataConfig:
    data_dir: str | None = field(default=None, metadata={
        "help": "the data set: a folder (image folder with train/ and test/, class folders, "
                "list files train.txt/test.txt/database.txt, a folder of unlabelled images, "
                "cifar-10-batches-py or the MNIST/Fashion-MNIST IDX files), a CSV file of "
                "path,label,split or a file written by deephash pack; else $DEEPHASH_DATA "
                "(see docs/data.md)"})
    dataset: str = field(default="auto", metadata={
        "flag": "--format", "aliases": ("--dataset",), "choices": DATASET_KINDS,
        "help": "data set kind; auto detects it from the files (docs/data.md)"})
    image_root: str | None = field(default=None, metadata={
        "help": "folder the image paths of list files or a CSV are relative to (default: "
                "the folder of the lists, of the CSV)"})
    protocol: str = field(default="auto", metadata={
        "parse": check_protocol, "help": PROTOCOL_HELP})
    download: bool = field(default=True, metadata={
        "help": "download CIFAR-10, MNIST or Fashion-MNIST when --format names it and it "
                "is missing"})
    skip_bad_images: bool = field(default=False, metadata={
        "help": "leave out images whose header PIL cannot read or that declare more pixels "
                "than it decodes (a decompression bomb), listing them in run.json, instead "
                "of stopping (every image's header is checked before any work)"})


@dataclass
class BackboneConfig:
    name: str = field(default="efficientnet_lite0", metadata={
        "flag": "--backbone", "parse": check_backbone, "help": BACKBONE_HELP})
    weights: str = field(default="default", metadata={
        "help": "'default' (ImageNet; timm:NAME: timm's pretrained weights, from the Hugging "
                "Face cache or downloaded into it), 'none' (random init) or a state-dict file "
                "(.pth, or .safetensors)"})
    image_size: int = field(default=128, metadata={
        "min": 1, "max": MAX_IMAGE_SIZE,
        "help": "input side in pixels; 128 keeps 99%% of the 224-px kNN accuracy on CIFAR-10 "
                "at 4x the speed (docs/findings.md)"})


@dataclass
class ExtractionConfig:
    batch_size: int = field(default=128, metadata={"min": 1, "help": "images per forward pass"})
    num_workers: int | None = field(default=None, metadata={
        "min": 0, "help": "image-decoding worker processes; default none when the model "
                          "runs on the CPU (workers would compete with it for the cores), "
                          "one per spare core (at most 8) on CUDA"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "feature cache folder (default $DEEPHASH_CACHE or ~/.cache/deephash)"})
    cache: bool = field(default=True, metadata={"help": "read and write the feature cache"})
    flip_views: bool = field(default=False, metadata={
        "help": "also extract and cache horizontally flipped views (for augmentation)"})
    runtime: str = field(default="auto", metadata={
        "choices": RUNTIME_CHOICES,
        "help": "runtime of the frozen backbone: auto = openvino on the CPU when installed "
                "(the fastest measured), else onnxruntime, else torch; torch on CUDA and "
                "for under 2000 images (an export costs more than it saves); openvino and "
                "onnxruntime run on the CPU whatever --device. Float32 runtimes agree "
                "within 1e-5 and share the feature cache"})
    precision: str = field(default="fp32", metadata={
        "choices": PRECISIONS,
        "help": "fp32, or bf16 (openvino, torch): about 2x faster where the CPU has "
                "bfloat16 units; features move (cosine 0.998 to fp32) and are cached apart "
                "(docs/usage.md)"})


@dataclass
class EvalConfig:
    distance: str = field(default="cosine", metadata={
        "choices": DISTANCES, "help": "distance used for ranking"})
    knn_k: tuple[int, ...] = field(default=(1, 5, 10), metadata={
        "min": 1, "help": "k of kNN accuracy"})
    map_cutoffs: tuple[int, ...] = field(default=(1000,), metadata={
        "min": 1, "help": "k of mAP@k"})
    precision_k: tuple[int, ...] = field(default=(10, 100), metadata={
        "min": 1, "help": "k of P@k"})
    tsne_points: int = field(default=2000, metadata={
        "min": 0, "help": "t-SNE sample size (0: no plot)"})


@dataclass
class BaselineConfig:
    out: str = field(default="runs/baseline", metadata={"help": "run folder to write"})
    overwrite: bool = field(default=False, metadata={
        "help": "clear a non-empty --out that holds an earlier run first (saved as false)"})
    seed: int = field(default=0, metadata={
        "min": 0, "max": MAX_SEED, "help": "seed of the splits and the t-SNE sample"})
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
