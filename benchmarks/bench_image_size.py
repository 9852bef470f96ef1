"""kNN accuracy and extraction speed of the default backbone against input size.

The evidence behind the default ``--image-size 128``: CIFAR-10 images are 32 px, and
upsampling them helps ImageNet features up to a point, at a quadratic cost in speed. A
seeded stratified slice of CIFAR-10 (JPEG mirror): ``--train`` training images per class
as the database, ``--test`` test images per class as queries; 10-NN accuracy (cosine).

    ./run python benchmarks/bench_image_size.py [--sizes 32 64 128 224]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from deephash.backbones import create_backbone
from deephash.data import open_dataset
from deephash.features import transform_spec
from deephash.features.extract import PixelImages, extract_features
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.viz.tsne import stratified_sample


def main() -> None:
    from common import DATA, write_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 224])
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    dataset = open_dataset(str(DATA))
    n_classes = len(dataset.classes)
    train = np.flatnonzero(~dataset.is_test)
    test = np.flatnonzero(dataset.is_test)
    train = train[stratified_sample(dataset.labels[train], args.train * n_classes, args.seed)]
    test = test[stratified_sample(dataset.labels[test], args.test * n_classes, args.seed)]
    backbone = create_backbone("efficientnet_lite0")
    rows = []
    for size in args.sizes:
        spec = transform_spec(backbone, size)
        start = time.perf_counter()
        features = extract_features(backbone, PixelImages(
            dataset, np.concatenate([train, test]), spec), num_workers=2)
        seconds = time.perf_counter() - start
        db, queries = features[: len(train)], features[len(train):]
        report = evaluate_retrieval(queries, db, dataset.labels[test], dataset.labels[train],
                                    "cosine", EvaluationSpec(knn_k=(10,), map_cutoffs=()))
        rows.append({"image_size": size, "knn_acc@10": round(report.metrics["knn_acc@10"], 4),
                     "map@all": round(report.metrics["map@all"], 4),
                     "images_per_s": round(len(features) / seconds, 1)})
        print(rows[-1], flush=True)
    write_result("image_size", {
        "what": f"efficientnet_lite0 features of CIFAR-10 (JPEG mirror): {args.test}/class test "
                f"queries against {args.train}/class training images, seed {args.seed}",
        "rows": rows})


if __name__ == "__main__":
    main()
