"""A multi-label stand-in built from CIFAR-10: mosaics of 2-4 images, labelled with the union
of their classes, in the DeepHash-pytorch list-file layout.

Each mosaic is a 2x2 grid of 32-px tiles (a 64x64 JPEG) showing 2, 3 or 4 CIFAR images
(equally likely); the cells are shuffled, and the cells a mosaic of 2 or 3 images leaves
over show its own images again (a seeded choice, each image at most twice). Its labels are
the set of its images' classes, so two mosaics are relevant when they show a common class,
as two NUS-WIDE images are when they share a concept; a mosaic whose images are all of one
class stays single-label, as such images do in NUS-WIDE. Repeated images rather than black
cells: black would make the mosaics of few images look alike whatever they show, a cue
that has nothing to do with their classes and runs against relevance (fewer images, fewer
labels). On 1,000 database mosaics and 200 queries (seed 0) the frozen Lite0 features
scored mAP@all 0.643 and pair AUC 0.568 with black cells, 0.671 and 0.607 with repeated
images. A mosaic has 2.7 labels on average, so a query shares one with about 59 % of the
database (a random ranking's mAP@all: 0.59), a base rate like NUS-WIDE's.

Queries are made of tiles from CIFAR-10's test part, database mosaics of tiles from its
train part, and no CIFAR image appears in two mosaics, so no tile is shared between a
query and the database (or between two database mosaics). The training list is a seeded
subset of the database, as in NUS-WIDE's and MS-COCO's published lists. Written to OUT:

- ``images/query/NNNNN.jpg``, ``images/database/NNNNN.jpg``;
- ``test.txt`` (the queries), ``database.txt``, ``train.txt``: one
  ``images/database/00042.jpg 0 1 0 0 0 0 1 0 0 0`` line per image, one 0/1 column per
  class (paths relative to OUT);
- ``classes.txt``: the class names, one a line, in column order;
- ``mosaics.json``: the seed, the sizes and each mosaic's source images (relative to SRC)
  and the image in each cell (row-major).

The default sizes (10,000 database mosaics, 1,000 queries, 5,000 training mosaics, about
30,000 and 3,000 CIFAR images) keep a frozen-feature study of it within minutes on a
2-core CPU. Everything follows from ``--seed``; OUT must not exist or be empty, and is
filled in a temporary folder beside it that is renamed at the end, so an interrupted run
leaves no half-written data set.

    ./run python benchmarks/make_multilabel_cifar.py ../shared/data/cifar10 OUT --seed 0
          [--database 10000] [--queries 1000] [--train 5000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.decode import open_rgb
from deephash.data.image_folder import ImageFolderDataset
from deephash.errors import DataError

TILE = 32  # px; CIFAR-10's size (other sizes are resized)
GRID = 2  # a GRID x GRID mosaic
TILES_PER_MOSAIC = (2, 3, 4)
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Mosaic:
    """One mosaic: its distinct source images (pool indices of the CIFAR-10 tree) and the
    image in each of its GRID² cells (row-major)."""

    sources: tuple[int, ...]
    grid: tuple[int, ...]


def plan_mosaics(pool: np.ndarray, count: int, rng: np.random.Generator) -> list[Mosaic]:
    """``count`` mosaics of distinct images from ``pool`` (``(P,)`` pool indices)."""
    sizes = rng.choice(TILES_PER_MOSAIC, size=count)
    needed = int(sizes.sum())
    if needed > len(pool):
        raise DataError(f"{count:,} mosaics need {needed:,} distinct images, and the part has "
                        f"{len(pool):,}; ask for fewer mosaics")
    drawn = rng.permutation(pool)[:needed]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    mosaics = []
    for m in range(count):
        sources = drawn[starts[m]:starts[m + 1]]
        repeated = rng.choice(sources, size=GRID * GRID - len(sources), replace=False)
        grid = rng.permutation(np.concatenate([sources, repeated]))
        mosaics.append(Mosaic(tuple(int(i) for i in sources), tuple(int(i) for i in grid)))
    return mosaics


def compose(source: ImageFolderDataset, mosaic: Mosaic) -> Image.Image:
    """The ``(GRID*TILE)²`` RGB mosaic."""
    canvas = Image.new("RGB", (GRID * TILE, GRID * TILE))
    tiles = {index: open_rgb(source.root / source.paths[index]) for index in mosaic.sources}
    for cell, index in enumerate(mosaic.grid):
        tile = tiles[index]
        if tile.size != (TILE, TILE):
            tile = tile.resize((TILE, TILE), Image.Resampling.BILINEAR)
        canvas.paste(tile, ((cell % GRID) * TILE, (cell // GRID) * TILE))
    return canvas


def label_row(source: ImageFolderDataset, mosaic: Mosaic) -> list[int]:
    """The mosaic's 0/1 label vector: the union of its tiles' classes."""
    row = [0] * len(source.classes)
    for index in mosaic.sources:
        row[int(source.labels.ids[index])] = 1
    return row


def make_multilabel(src: Path, out: Path, seed: int = 0, n_database: int = 10_000,
                    n_queries: int = 1_000, n_train: int = 5_000) -> Path:
    """Write the stand-in to ``out`` (see the module docstring); returns ``out``."""
    if not 0 < n_train <= n_database or n_queries < 1:
        raise DataError(f"sizes must satisfy 0 < train <= database and queries >= 1, not "
                        f"train {n_train}, database {n_database}, queries {n_queries}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and is not an empty folder; give a new OUT")
    source = ImageFolderDataset(src)
    if not source.labels.is_single:
        raise DataError(f"{src} must be a single-label image-folder tree")
    rng = np.random.default_rng(seed)
    plans = {"database": plan_mosaics(np.flatnonzero(~source.is_test), n_database, rng),
             "query": plan_mosaics(np.flatnonzero(source.is_test), n_queries, rng)}
    train = np.sort(rng.choice(n_database, size=n_train, replace=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        lines: dict[str, list[str]] = {}
        for part, mosaics in plans.items():
            (staging / "images" / part).mkdir(parents=True)
            lines[part] = []
            for number, mosaic in enumerate(mosaics):
                relative = f"images/{part}/{number:05d}.jpg"
                compose(source, mosaic).save(staging / relative, quality=JPEG_QUALITY)
                lines[part].append(" ".join([relative, *map(str, label_row(source, mosaic))]))
        write_lines(staging / "database.txt", lines["database"])
        write_lines(staging / "test.txt", lines["query"])
        write_lines(staging / "train.txt", [lines["database"][i] for i in train])
        write_lines(staging / "classes.txt", source.classes)
        record = {"source": str(src), "seed": seed,
                  "sizes": {"database": n_database, "query": n_queries, "train": n_train},
                  "tile": TILE, "grid_side": GRID, "tiles_per_mosaic": list(TILES_PER_MOSAIC),
                  "mosaics": {f"images/{part}/{number:05d}.jpg":
                              {"sources": [source.paths[i] for i in mosaic.sources],
                               "grid": [source.paths[i] for i in mosaic.grid]}
                              for part, mosaics in plans.items()
                              for number, mosaic in enumerate(mosaics)}}
        (staging / "mosaics.json").write_text(json.dumps(record, indent=1) + "\n")
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="CIFAR-10 image-folder tree (train/, test/)")
    parser.add_argument("out", type=Path, help="folder to write (new or empty)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database", type=int, default=10_000, help="database mosaics")
    parser.add_argument("--queries", type=int, default=1_000, help="query mosaics")
    parser.add_argument("--train", type=int, default=5_000,
                        help="training mosaics, a seeded subset of the database")
    args = parser.parse_args(argv)
    try:
        make_multilabel(args.src, args.out, args.seed, args.database, args.queries, args.train)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
