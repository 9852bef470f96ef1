"""The ranking of served code searches alone, at 60,000 and 1,000,000 items.

Times :meth:`deephash.index.rerank.CodeRanker.rank` for one query at a time (as
``serve`` answers a search by id: no forward pass), k = 10, re-ranking the ties by float16
continuous outputs, and with ``--rerank none``. The database is a hash run's saved codes
and relaxed outputs (``--run RUN/bits-48``: real tie structure), tiled to each size with
the outputs jittered, or without a run clustered synthetic 48-bit codes (ten centres, a
few bits flipped: thousands of ties, as in trained codes). Results, with the machine and
the command, go to ``benchmarks/results/rerank.json``; the service's own latency with
re-ranking is ``bench_service.py``'s.

    ./run python benchmarks/bench_rerank.py [--run RUN/bits-48] [--sizes 60000 1000000]
          [--queries 200]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import write_result

from deephash.distances import as_distance
from deephash.index.rerank import CodeRanker


def database(size: int, run: Path | None, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                              np.ndarray, str]:
    """``(size, W)`` packed codes, ``(size, K)`` float16 outputs and the training distance."""
    if run is not None:
        import yaml

        saved = np.load(run / "codes" / "database.npz")
        rows = np.arange(size) % len(saved["codes"])
        relaxed = saved["relaxed"][rows].astype(np.float32)
        relaxed += rng.normal(scale=0.01, size=relaxed.shape).astype(np.float32)
        config = yaml.safe_load((run / "config.yaml").read_text())
        return (np.packbits(relaxed >= 0, axis=1), relaxed.astype(np.float16),
                config["training"]["distance"])
    centres = rng.choice([-1.0, 1.0], size=(10, 48))
    relaxed = centres[rng.integers(0, 10, size)] * rng.uniform(0.2, 1.0, (size, 48))
    flips = rng.random((size, 48)) < 0.08
    relaxed[flips] *= -1
    return np.packbits(relaxed >= 0, axis=1), relaxed.astype(np.float16), "neg-half-inner"


def time_ranker(ranker: CodeRanker, codes: np.ndarray, outputs: np.ndarray,
                queries: np.ndarray, k: int) -> dict[str, Any]:
    ranker.rank(codes[:1], k, outputs[:1].astype(np.float32))  # warm
    seconds, tied = [], []
    for q in queries:
        start = time.perf_counter()
        ranked = ranker.rank(codes[q:q + 1], k, outputs[q:q + 1].astype(np.float32))
        seconds.append(time.perf_counter() - start)
        tied.append(int(ranked.tied[0]))
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "tied_at_k_median": float(np.median(tied))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a hash run's bits-<K> folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[60_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="rerank", help="results file name")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in args.sizes:
        codes, outputs, distance = database(size, args.run, rng)
        queries = rng.choice(size, min(args.queries, size), replace=False)
        bits = outputs.shape[1]
        row: dict[str, Any] = {"size": size, "bits": bits, "train_distance": distance}
        for rerank in ("ties", "none"):
            ranker = CodeRanker(codes, bits, outputs, as_distance(distance), rerank)
            row[f"rerank_{rerank}"] = time_ranker(ranker, codes, outputs, queries, args.k)
        rows.append(row)
    command = " ".join(shlex.quote(word) for word in ["python", *sys.argv])
    write_result(args.name, {"command": command, "k": args.k, "queries": args.queries,
                             "run": None if args.run is None else str(args.run), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
