"""``deephash index`` and ``deephash search``: a searchable collection of images.

An index folder holds ``index.npz`` (the retrieval index: packed codes of a hashing
model, or float embeddings) and ``items.npz`` (per row: the image's path, label, and the
class names), plus ``index.json`` naming the checkpoint that produced it. ``search``
embeds a query image with that checkpoint and prints the k nearest images; it can also
save a picture of the query beside its results, correct matches framed in green.

Index folders are relocatable. ``index.json`` records the checkpoint and, for an image
folder, the data root *relative to the index folder* (``"../run/best.pt"``), with the
absolute paths at indexing time as a fallback; ``items.npz`` holds image paths relative
to the data root. Moving the index folder together with the run and the data (one tree
moved or copied) keeps everything found; moving the index folder alone still finds them
at their old absolute places. A checkpoint found at neither place is named in the error,
and ``search --checkpoint`` points at it. Index folders written before relative paths
(absolute paths only) are read as they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import Backbone, create_backbone
from deephash.data import open_dataset
from deephash.data.dataset import ImageDataset
from deephash.data.fingerprint import memo_location
from deephash.data.image_folder import ImageFolderDataset
from deephash.data.transforms import TransformSpec
from deephash.devices import resolve_device
from deephash.errors import ConfigError, DataError
from deephash.features import compute_views, transform_spec
from deephash.fileio import save_json, save_npz
from deephash.hashing.codes import binarize, pack_codes
from deephash.index import create_index, load_index
from deephash.pipeline.cache import cache_location
from deephash.studies.configs import IndexConfig, SearchConfig
from deephash.training.checkpoint import load_model
from deephash.training.config import TrainConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import EmbeddingModel, partial_split
from deephash.training.trainer import embed
from deephash.validation import validate

log = logging.getLogger(__name__)

__all__ = ["IndexConfig", "SearchConfig", "build_index", "search_image"]


def feature_backbone(train_config: TrainConfig) -> Backbone:
    """What computes a model's inputs from images: the frozen backbone, or in partial mode
    the prefix before its trained blocks."""
    if train_config.training.mode == "partial":
        return partial_split(train_config)[0]
    return create_backbone(train_config.backbone.name, train_config.backbone.weights)


def _views(train_config: TrainConfig) -> tuple[str, ...]:
    """The image views whose embeddings are averaged, as in the model's evaluation."""
    return ("identity", "hflip") if train_config.training.test_time_flip else ("identity",)


def _vectors(model: EmbeddingModel, features: list[np.ndarray], codes: bool) -> np.ndarray:
    """Packed codes or float32 embeddings of ``(N, D)`` features, ``features[1]`` being the
    mirrored view when the model is evaluated with test-time flip (as in training)."""
    inputs = FeatureInputs(features[0], features[1] if len(features) > 1 else None, seed=0,
                           augment=False)
    out = embed(model, inputs, np.arange(len(features[0])), torch.device("cpu"),
                test_time_flip=len(features) > 1)
    return pack_codes(binarize(out)) if codes else out


def build_index(config: IndexConfig) -> dict[str, Any]:
    """Embed every image of ``data_dir`` with the checkpoint and index the results."""
    validate(config)  # --checkpoint given and a file
    train_config, model = load_model(Path(config.checkpoint))
    if train_config.training.mode == "finetune":
        raise ConfigError("indexing supports frozen and partial models (cached features or "
                          "activations), not --mode finetune")
    cache = cache_location(config)
    dataset = open_dataset(config.data_dir, "auto", fingerprint_memo=memo_location(cache))
    backbone = feature_backbone(train_config)
    spec = transform_spec(backbone, train_config.backbone.image_size)
    views = compute_views(dataset, backbone, spec, _views(train_config), cache_dir=cache,
                          runtime="auto", precision=train_config.extraction.precision,
                          device=resolve_device(config.device))
    features = [views[view] for view in _views(train_config)]
    codes = train_config.training.codes
    vectors = _vectors(model, features, codes)
    dim = train_config.training.embedding_dim
    if config.index == "auto":
        config = dataclasses.replace(config, index="BFlat" if codes else "Flat")
    if codes == (config.index == "Flat"):
        raise ConfigError(f"index {config.index} does not fit a "
                          f"{'hashing' if codes else 'float embedding'} model; use "
                          f"{'BFlat' if codes else 'Flat'}")
    index = create_index(config.index, dim)
    index.add(vectors, ids=np.arange(len(dataset)))
    out = Path(config.out)
    index.save(out / "index.npz")
    paths, places = _item_paths(dataset, out)
    save_npz(out / "items.npz", paths=paths, labels=dataset.labels,
             classes=np.array(dataset.classes))
    checkpoint = Path(config.checkpoint).resolve()
    info = {"checkpoint": _relative(checkpoint, out), "checkpoint_absolute": str(checkpoint),
            **places, "index": config.index, "codes": codes, "dim": dim,
            "n_items": len(dataset), "data": dataset.name, "spec": spec.describe()}
    save_json(out / "index.json", info)
    log.info("indexed %d images into %s (%s)", len(dataset), out, config.index)
    return info


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (``"../run/best.pt"``); absolute where none exists
    (another drive)."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(folder).resolve())
    except ValueError:
        return str(Path(path).resolve())


def _item_paths(dataset: ImageDataset, out: Path) -> tuple[np.ndarray, dict[str, str]]:
    """Per row, the image's path relative to the data root, and the data root (relative
    to the index folder, and absolute) for ``index.json``; data sets that are not image
    folders keep their own description of each row (``cifar10:test[17]``)."""
    if not isinstance(dataset, ImageFolderDataset):
        return np.array([dataset.describe(i) for i in range(len(dataset))]), {}
    root = dataset.root.resolve()
    return np.array(dataset.paths), {"data_root": _relative(root, out),
                                     "data_root_absolute": str(root)}


def _locate(folder: Path, info: dict[str, Any], key: str) -> Path | None:
    """Where ``info[key]`` is now: relative to the index folder (an absolute entry of an
    older index stays as it is), else at its absolute place when indexed; ``None`` if
    neither exists."""
    for place in (folder / info[key], info.get(f"{key}_absolute")):
        if place is not None and Path(place).exists():
            return Path(place)
    return None


def _checkpoint(folder: Path, info: dict[str, Any], override: str | None) -> Path:
    if override:
        return Path(override)
    found = _locate(folder, info, "checkpoint")
    if found is None:
        places = " or ".join(dict.fromkeys(os.path.normpath(p) for p in (
            folder / info["checkpoint"], info.get("checkpoint_absolute")) if p))
        raise ConfigError(f"{folder / 'index.json'} names checkpoint {info['checkpoint']}, "
                          f"which is not at {places}; pass --checkpoint with the run's best.pt")
    return found


def _kind(codes: bool, dim: Any) -> str:
    return f"{dim}-bit codes" if codes else f"{dim}-d embeddings"


def _check_fits(model_config: TrainConfig, info: dict[str, Any], checkpoint: Path) -> None:
    """Refuse a ``--checkpoint`` whose vectors are not the index's kind and size."""
    codes, dim = model_config.training.codes, model_config.training.embedding_dim
    if codes != info["codes"] or dim != info.get("dim", dim):
        raise ConfigError(f"checkpoint {checkpoint} gives {_kind(codes, dim)}, the index "
                          f"holds {_kind(info['codes'], info.get('dim'))}; pass the checkpoint "
                          "that built the index")


def _item_root(folder: Path, info: dict[str, Any]) -> Path | None:
    """The folder item paths are relative to (``None``: they are complete)."""
    if "data_root" not in info:
        return None
    found = _locate(folder, info, "data_root")
    if found is None:
        log.warning("the indexed images are neither at %s nor at %s; printing their paths "
                    "as indexed", folder / info["data_root"], info.get("data_root_absolute"))
        found = folder / info["data_root"]
    return found.resolve()


def search_image(config: SearchConfig) -> list[dict[str, Any]]:
    """Print (and return) the k nearest indexed images to ``config.image``."""
    validate(config)
    if not config.image:
        raise ConfigError("give a query image: deephash search IMAGE --index FOLDER")
    folder = Path(config.index)
    try:
        info = json.loads((folder / "index.json").read_text())
        items = np.load(folder / "items.npz", allow_pickle=False)
    except OSError:
        raise ConfigError(f"{folder} is not an index folder (run deephash index)") from None
    from PIL import Image, UnidentifiedImageError

    from deephash.data.decode import to_rgb

    try:
        with Image.open(config.image) as image:
            query = to_rgb(image)
    except (OSError, UnidentifiedImageError):
        raise DataError(f"cannot read image {config.image}") from None
    checkpoint = _checkpoint(folder, info, config.checkpoint)
    train_config, model = load_model(checkpoint)
    _check_fits(train_config, info, checkpoint)
    backbone = feature_backbone(train_config)
    spec = info["spec"]
    features = []
    for view in _views(train_config):
        transform = TransformSpec(spec["image_size"], tuple(spec["mean"]), tuple(spec["std"]),
                                  spec["interpolation"], view).build()
        with torch.inference_mode():
            features.append(backbone(transform(query)[None]).numpy())
    vector = _vectors(model, features, info["codes"])
    result = load_index(folder / "index.npz").search(vector, config.k)
    classes = [str(c) for c in items["classes"]]
    root = _item_root(folder, info)
    label = config.label or Path(config.image).parent.name
    rows = []
    print(f"{'rank':>4}  {'distance':>8}  {'label':<12}  path")
    for rank, (distance, item) in enumerate(zip(result.distances[0], result.ids[0],
                                                strict=True), start=1):
        if item < 0:
            break
        row = {"rank": rank, "distance": float(distance), "label": classes[items["labels"][item]],
               "path": str(items["paths"][item]) if root is None
               else str(root / str(items["paths"][item]))}
        rows.append(row)
        print(f"{rank:>4}  {row['distance']:>8.3g}  {row['label']:<12}  {row['path']}")
    if config.show:
        from deephash.viz.search import plot_results

        plot_results(query, rows, label if label in classes else None, Path(config.show))
    return rows
