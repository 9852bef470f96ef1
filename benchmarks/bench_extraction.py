"""Feature-extraction throughput of every runtime and precision, the pipeline around the
fastest one, bf16's effect on the features, and cache-hit time.

1. Runtimes side by side: images/s of every runtime x precision (``torch``, ``openvino``,
   ``onnxruntime``; ``fp32``, ``bf16`` where offered) on the same in-memory batches at 32,
   64, 128 and 224 px, rounds alternating between them so that the machine's noise hits
   all alike; medians, and ratios to PyTorch eager float32. Goal (issue 11): float32 at
   128 px >= 3.5x torch eager.
2. The pipeline at ``--image-size`` (128): decoding the JPEGs in DataLoader workers and
   computing both views (image and mirror) from one decode, against the bare forward of
   both views on tensors already in memory (goal: ratio >= 0.9), for torch and for
   ``auto``'s runtime in each precision; the whole CIFAR-10 (60,000 images, two views) at
   that rate. Goals: <= 10 minutes in float32, <= 3 minutes in bf16.
3. bf16 against float32 on a seeded stratified slice of CIFAR-10 (``--train`` database and
   ``--test`` query images per class): relative difference, cosine similarity, how often an
   image keeps its nearest neighbour, and the slice's mAP@all and 10-NN accuracy in both
   precisions (a preview; the verdict on bf16 needs the full protocol, see README).
4. The cache-hit time: opening a full pool's features (memory-mapped) and reading them all.

    ./run python benchmarks/bench_extraction.py [--images 128] [--pipeline-images 2048]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deephash.backbones import Backbone, create_backbone
from deephash.data import ImageDataset, open_dataset
from deephash.data.transforms import TransformSpec
from deephash.features import feature_key, transform_spec
from deephash.features.cache import FeatureCache
from deephash.features.extract import PixelImages, apply_view, extract_views
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.runtimes import (
    RUNTIME_INFO,
    RUNTIMES,
    Runtime,
    build_runtime,
    is_installed,
    relative_difference,
    resolve_runtime,
)
from deephash.viz.tsne import stratified_sample

VIEWS = ("identity", "hflip")
CIFAR_IMAGES = 60_000


def main() -> None:
    from common import DATA, write_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=128, help="per runtime and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 224])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128, help="of the pipeline")
    parser.add_argument("--pipeline-images", type=int, default=2048,
                        help="of the pipeline with a fast runtime (half a feature-cache shard)")
    parser.add_argument("--torch-pipeline-images", type=int, default=512)
    parser.add_argument("--train", type=int, default=100, help="per class, bf16's slice")
    parser.add_argument("--test", type=int, default=50, help="per class, bf16's slice")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0, 1, 2],
                        help="decoding workers of the pipeline, each measured")
    args = parser.parse_args()

    dataset = open_dataset(str(DATA))
    backbone = create_backbone("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as cache:
        exports = Path(cache)
        grid = [_runtimes_at(size, dataset, backbone, args, exports) for size in args.sizes]
        pipeline = _pipelines(dataset, backbone, args, exports)
        effect = _bf16_effect(dataset, backbone, args, exports)
        hit = _cache_hit_seconds(dataset, backbone, transform_spec(backbone, args.image_size),
                                 exports)
    at_128 = next((row for row in grid if row["image_size"] == 128), None)
    fastest_fp32 = max(ratio for name, ratio in at_128["vs_torch_fp32"].items()
                       if name.endswith("/fp32")) if at_128 else None
    write_result("extraction", {
        "what": f"efficientnet_lite0 on CIFAR-10 (JPEG mirror), batch {args.batch_size}; "
                f"runtimes: {args.images} images per size, median of {args.rounds} "
                f"alternating rounds; pipeline: {args.pipeline_images} images x 2 views "
                f"({args.torch_pipeline_images} with torch), with {args.num_workers} "
                f"decoding workers; runtimes take uint8 pixels and normalise them",
        "versions": _versions(),
        "runtimes_images_per_s": grid,
        "fastest_fp32_vs_torch_at_128px": fastest_fp32,
        "pipeline": pipeline,
        "bf16_vs_fp32": effect,
        "cache_hit": hit,
        "goals": {"fp32 at 128 px vs torch eager": ">= 3.5x",
                  "pipeline vs bare forward": ">= 0.9",
                  "CIFAR-10, 60,000 x 2 views": "<= 10 min fp32, <= 3 min bf16"},
    })


def _versions() -> dict[str, str]:
    import importlib.metadata

    return {name: importlib.metadata.version(name) for name in ("openvino", "onnxruntime")
            if is_installed(name)}


def _engines() -> list[tuple[str, str]]:
    """Every installed (runtime, precision), torch float32 first."""
    return [(name, precision) for name in ["torch", *(n for n in RUNTIMES.names() if n != "torch")]
            if is_installed(name) for precision in RUNTIME_INFO[name].precisions]


def _batches(dataset: ImageDataset, spec: TransformSpec, indices: np.ndarray,
             batch_size: int) -> list[torch.Tensor]:
    """uint8 pixel batches of ``indices``, decoded in advance: what a runtime takes."""
    images = PixelImages(dataset, indices, spec)
    return list(torch.split(images.collate([images[i] for i in range(len(images))])[0],
                            batch_size))


def _spread(dataset: ImageDataset, n: int) -> np.ndarray:
    return np.linspace(0, len(dataset) - 1, n).astype(np.int64)


def _alternate(runs: dict[str, Callable[[], object]], rounds: int,
               warm_up: bool = True) -> dict[str, float]:
    """Median seconds of each run over ``rounds`` rounds that alternate between them."""
    for run in runs.values() if warm_up else ():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def _runtimes_at(size: int, dataset: ImageDataset, backbone: Backbone, args: Any,
                 exports: Path) -> dict[str, Any]:
    batches = _batches(dataset, transform_spec(backbone, size), _spread(dataset, args.images),
                       args.batch_size)
    engines: dict[str, Runtime] = {}
    build_s = {}
    for name, precision in _engines():
        start = time.perf_counter()
        engines[f"{name}/{precision}"] = build_runtime(name, backbone, size,
                                                       precision=precision, cache_dir=exports)
        build_s[f"{name}/{precision}"] = round(time.perf_counter() - start, 2)

    def features(engine: Runtime) -> np.ndarray:
        return np.concatenate([engine(batch) for batch in batches])

    reference = features(engines["torch/fp32"])
    difference = {label: float(f"{relative_difference(features(e), reference):.2e}")
                  for label, e in engines.items()}
    seconds = _alternate({label: lambda e=e: features(e) for label, e in engines.items()},
                         args.rounds)
    rates = {label: round(args.images / s, 1) for label, s in seconds.items()}
    row = {"image_size": size, "images_per_s": rates,
           "vs_torch_fp32": {label: round(rate / rates["torch/fp32"], 2)
                             for label, rate in rates.items()},
           "max_relative_difference": difference, "build_seconds": build_s}
    print(row, flush=True)
    return row


def _pipelines(dataset: ImageDataset, backbone: Backbone, args: Any,
               exports: Path) -> list[dict[str, Any]]:
    """Decode + both views (with each of ``--num-workers``) against the bare forward of
    both views on pixels already in memory, for torch and for what ``auto`` picks for a
    full CIFAR-10 extraction in each precision."""
    spec = transform_spec(backbone, args.image_size)
    choices = [("torch", "fp32")] + [
        (resolve_runtime("auto", precision, "cpu", 2 * CIFAR_IMAGES), precision)
        for precision in ("fp32", "bf16")]
    rows = []
    for name, precision in dict.fromkeys(choices):
        n = args.torch_pipeline_images if name == "torch" else args.pipeline_images
        images = PixelImages(dataset, _spread(dataset, n), spec)
        batches = _batches(dataset, spec, images.indices, args.batch_size)
        engine: Runtime = build_runtime(name, backbone, args.image_size, precision=precision,
                                        cache_dir=exports)

        def bare(engine: Runtime = engine, batches: list[torch.Tensor] = batches) -> None:
            for batch in batches:
                for view in VIEWS:
                    engine(apply_view(batch, view))

        def full(workers: int, engine: Runtime = engine, images: PixelImages = images) -> None:
            extract_views(engine, backbone, images, VIEWS, batch_size=args.batch_size,
                          num_workers=workers)

        runs: dict[str, Callable[[], object]] = {"bare": bare}
        runs.update({f"{w} workers": lambda w=w: full(w) for w in args.num_workers})
        seconds = _alternate(runs, args.rounds, warm_up=False)
        views = len(images) * len(VIEWS)
        rates = {label: views / s for label, s in seconds.items()}
        best = max((label for label in rates if label != "bare"), key=rates.__getitem__)
        rows.append({"runtime": name, "precision": precision,
                     "bare_forward_image_views_per_s": round(rates["bare"], 1),
                     "pipeline_image_views_per_s": {label: round(rate, 1) for label, rate
                                                    in rates.items() if label != "bare"},
                     "ratio": {label: round(rate / rates["bare"], 3) for label, rate
                               in rates.items() if label != "bare"},
                     "best": best, "best_ratio": round(rates[best] / rates["bare"], 3),
                     "cifar10_two_views_minutes": round(2 * CIFAR_IMAGES / rates[best] / 60,
                                                        1)})
        print(rows[-1], flush=True)
    return rows


def _bf16_effect(dataset: ImageDataset, backbone: Backbone, args: Any,
                 exports: Path) -> dict[str, Any]:
    """bf16 against float32 features on a seeded stratified slice of CIFAR-10: how far the
    features move, and the slice's retrieval figures (test queries against training
    images, cosine) in both precisions, per runtime that offers bf16."""
    n_classes = len(dataset.classes)
    train, test = np.flatnonzero(~dataset.is_test), np.flatnonzero(dataset.is_test)
    train = train[stratified_sample(dataset.labels[train], args.train * n_classes, 0)]
    test = test[stratified_sample(dataset.labels[test], args.test * n_classes, 0)]
    batches = _batches(dataset, transform_spec(backbone, args.image_size),
                       np.concatenate([train, test]), args.batch_size)

    def retrieval(features: np.ndarray) -> dict[str, float]:
        report = evaluate_retrieval(features[len(train):], features[: len(train)],
                                    dataset.labels[test], dataset.labels[train], "cosine",
                                    EvaluationSpec(knn_k=(10,), map_cutoffs=()))
        return {k: round(report.metrics[k], 4) for k in ("map@all", "knn_acc@10")}

    fp32 = np.concatenate([build_runtime("torch", backbone, args.image_size)(b)
                           for b in batches])
    out: dict[str, Any] = {"slice": f"{args.train} training (database) and {args.test} test "
                                    f"(query) images per class, seed 0",
                           "image_size": args.image_size, "fp32": retrieval(fp32)}
    for name, precision in _engines():
        if precision != "bf16":
            continue
        engine = build_runtime(name, backbone, args.image_size, precision="bf16",
                               cache_dir=exports)
        bf16 = np.concatenate([engine(b) for b in batches])
        cosine = np.sum(_unit(bf16) * _unit(fp32), axis=1)
        out[name] = {"max_relative_difference": float(f"{relative_difference(bf16, fp32):.2e}"),
                     "min_cosine": round(float(cosine.min()), 5),
                     "mean_cosine": round(float(cosine.mean()), 6),
                     "same_nearest_neighbour": round(float(np.mean(
                         _nearest(bf16) == _nearest(fp32))), 4),
                     "bf16": retrieval(bf16)}
        print(name, out[name], flush=True)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _nearest(x: np.ndarray) -> np.ndarray:
    """Each row's nearest other row by cosine similarity."""
    similarity = _unit(x) @ _unit(x).T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def _cache_hit_seconds(dataset: ImageDataset, backbone: Backbone, spec: TransformSpec,
                       root: Path) -> dict[str, float]:
    """Time to open a full pool's features from a warm cache entry (written here), and to
    read every value once."""
    key = feature_key(backbone, dataset, spec)
    cache = FeatureCache(root)
    fake = np.random.default_rng(0).normal(size=(key.n_images, key.dim)).astype(np.float32)
    cache.get_or_compute(key, lambda idx: fake[idx])
    float(np.sum(cache.load(key)))  # warm the page cache
    start = time.perf_counter()
    loaded = cache.load(key)
    opened = time.perf_counter() - start
    assert loaded is not None
    float(np.sum(loaded))
    return {"open_seconds_60000x1280": round(opened, 4),
            "open_and_read_seconds_60000x1280": round(time.perf_counter() - start, 3)}


if __name__ == "__main__":
    main()
