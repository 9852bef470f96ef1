"""Feature-extraction throughput against the bare backbone, and cache-hit time.

Both paths process the same images in the same batches: the bare path runs the backbone
on tensors already in memory; the full path decodes the JPEGs, transforms them in the
DataLoader and runs the backbone. Rounds alternate (bare, full, bare, full, ...) so that
the machine's noise hits both alike; the ratio of the medians is reported. Goal (issue 2):
ratio >= 0.9. The cache-hit time is that of reading the features of the whole pool
from a warm cache.

    ./run python benchmarks/bench_extraction.py [--images 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deephash.backbones import Backbone, create_backbone
from deephash.data import ImageDataset, open_dataset
from deephash.data.transforms import TransformSpec
from deephash.features import feature_key, transform_spec
from deephash.features.cache import FeatureCache
from deephash.features.extract import TransformedImages, extract_features

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"


def main() -> None:
    from common import write_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=2)
    args = parser.parse_args()

    dataset = open_dataset(str(DATA))
    backbone = create_backbone("efficientnet_lite0")
    spec = transform_spec(backbone, args.image_size)
    indices = np.linspace(0, len(dataset) - 1, args.images).astype(np.int64)
    images = TransformedImages(dataset, indices, spec.build(), args.image_size)
    tensors = torch.stack([images[i][0] for i in range(len(images))])
    batches = list(torch.split(tensors, args.batch_size))

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                backbone(batch)
        return time.perf_counter() - start

    def full() -> float:
        start = time.perf_counter()
        extract_features(backbone, images, batch_size=args.batch_size,
                         num_workers=args.num_workers)
        return time.perf_counter() - start

    bare()  # warm-up
    bare_times, full_times = [], []
    for _ in range(args.rounds):
        bare_times.append(bare())
        full_times.append(full())
    bare_rate = args.images / statistics.median(bare_times)
    full_rate = args.images / statistics.median(full_times)

    with tempfile.TemporaryDirectory() as cache:
        hit = _cache_hit_seconds(dataset, backbone, spec, Path(cache))

    write_result("extraction", {
        "what": f"efficientnet_lite0 at {args.image_size}px on CIFAR-10 (JPEG mirror), "
                f"{args.images} images, batch {args.batch_size}, {args.num_workers} workers, "
                f"median of {args.rounds} alternating rounds",
        "bare_forward_images_per_s": round(bare_rate, 1),
        "extraction_images_per_s": round(full_rate, 1),
        "ratio": round(full_rate / bare_rate, 3), "goal": "ratio >= 0.9",
        "cache_hit_seconds_60000x1280": round(hit, 3),
    })


def _cache_hit_seconds(dataset: ImageDataset, backbone: Backbone, spec: TransformSpec,
                       root: Path) -> float:
    """Time to read a full pool's features from a warm cache entry (written here)."""
    key = feature_key(backbone, dataset, spec)
    cache = FeatureCache(root)
    fake = np.random.default_rng(0).normal(size=(key.n_images, key.dim)).astype(np.float32)
    cache.get_or_compute(key, lambda idx: fake[idx])
    cache.load(key)  # warm the page cache
    start = time.perf_counter()
    loaded = cache.load(key)
    assert loaded is not None
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
