"""Small training sets: dead feature dimensions, training against the frozen features,
and DTSH's codes — the before/after figures of issue 10 (points 2, 3 and 4).

Stratified slices of CIFAR-10 (JPEG mirror) as image folders of symbolic links:
``c6000`` (500 training and 100 test images per class), ``c1000`` (100 and 100) and
``c300`` (30 and 100).
Every run is the ``deephash`` command with default options unless listed:

- *dead dimensions* (c6000, 32 px, where 242 of Lite0's 1,280 features are zero on every
  training image): ``train`` with and without ``--flip-augment``, with the head's input
  statistics as they are and as they were (std clamped at 1e-6, patched in here);
- *trained vs frozen* (c1000 at 32 and 128 px, c300 at 128 px, seeds 0-2): ``baseline``
  against ``train``, and ``train`` with more steps (``--batches-per-epoch``: 67 x 15 =
  1,005 steps on c1000, 30 x 15 on c300, against the default 5 x 15 and 1 x 15); at 32 px
  also the old statistics;
- *DTSH's codes* (c1000, 32 and 128 px): ``hash`` with its defaults (balance weight 0.1),
  with its defaults before (``--regularizers quantization=0.1``, no balance term), and
  with balance weights 0.3 and 1 (the weight is chosen on validation mAP@all).

    ./run python benchmarks/bench_small_data.py [--cache-dir DIR]

Results: ``benchmarks/results/small_data.json`` (a few minutes on 2 cores, most of it
extracting the slices' features once).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from deephash.cli import main as deephash
from deephash.training import head

SLICES = {"c6000": (500, 100), "c1000": (100, 100), "c300": (30, 100)}
KEYS = ("map@all", "knn_acc@1", "knn_acc@10", "val_map@all", "val_knn_acc@10",
        "frozen_val_map@all", "frozen_val_knn_acc@10", "best_epoch", "code_distinct",
        "code_bit_entropy")


def make_slice(root: Path, name: str) -> Path:
    """``root/name/{train,test}/<class>/`` linking the first images of each class."""
    from common import DATA

    n_train, n_test = SLICES[name]
    for part, count in (("train", n_train), ("test", n_test)):
        for folder in sorted((DATA / part).iterdir()):
            target = root / name / part / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for image in sorted(folder.iterdir())[:count]:
                (target / image.name).symlink_to(image.resolve())
    return root / name


def old_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's input statistics before the fix: std clamped at 1e-6."""
    return features.mean(0), features.std(0).clamp_min(1e-6)


@contextlib.contextmanager
def statistics(kind: str) -> Iterator[None]:
    fixed = head.feature_statistics
    head.feature_statistics = old_statistics if kind == "old" else fixed  # type: ignore
    try:
        yield
    finally:
        head.feature_statistics = fixed  # type: ignore[assignment]


def run(command: str, data: Path, out: Path, cache: Path, *options: str,
        stats: str = "new") -> dict[str, Any]:
    argv = [command, "--data-dir", str(data), "--out", str(out), "--cache-dir", str(cache),
            "--tsne-points", "0", *options]
    with statistics(stats):
        if deephash(argv) != 0:
            raise SystemExit(f"failed: deephash {' '.join(argv)}")
    metrics_file = next(out.glob("**/metrics.json"))
    metrics = json.loads(metrics_file.read_text())
    row = {"command": command, "data": data.name, "options": list(options),
           "statistics": stats, **{k: metrics[k] for k in KEYS if k in metrics}}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    from common import write_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", help="feature cache (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = Path(args.cache_dir) if args.cache_dir else root / "cache"
        data = {name: make_slice(root / "data", name) for name in SLICES}
        runs = iter(range(1000))

        def go(*args: Any, **kw: Any) -> dict[str, Any]:
            return run(*args[:2], root / "runs" / str(next(runs)), cache, *args[2:], **kw)

        dead = [go("train", data["c6000"], "--image-size", "32", flip, stats=stats)
                for stats in ("old", "new") for flip in ("--flip-augment", "--no-flip-augment")]
        frozen = []
        for name, size, more_steps in (("c1000", "32", "67"), ("c1000", "128", "67"),
                                       ("c300", "128", "30")):
            for seed in ("0", "1", "2"):
                options = ("--image-size", size, "--seed", seed)
                frozen.append(go("baseline", data[name], *options))
                frozen.append(go("train", data[name], *options))
                frozen.append(go("train", data[name], *options,
                                 "--batches-per-epoch", more_steps))
                if size == "32":
                    frozen.append(go("train", data[name], *options, stats="old"))
        codes = [go("hash", data["c1000"], "--image-size", size, *regularizers)
                 for size in ("32", "128")
                 for regularizers in ((), ("--regularizers", "quantization=0.1"),
                                      *(("--regularizers", "quantization=0.1", f"balance={w}")
                                        for w in ("0.3", "1")))]
    write_result("small_data", {
        "what": "CIFAR-10 (JPEG mirror) slices c6000 (500 train + 100 test per class), "
                "c1000 (100 + 100) and c300 (30 + 100); deephash defaults unless listed; "
                "test = test images against the slice's training images; statistics 'old' = "
                "the head's input "
                "std clamped at 1e-6 (before issue 10)",
        "dead_dimensions": dead, "trained_vs_frozen": frozen, "dtsh_codes": codes})


if __name__ == "__main__":
    main()
