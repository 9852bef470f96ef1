"""The ranking of served code searches alone, at 60,000 and 1,000,000 items.

Times :meth:`deephash.index.rerank.CodeRanker.rank` for one query at a time (as
``serve`` answers a search by id: no forward pass), k = 10, re-ranking the ties by float16
continuous outputs, and with ``--rerank none``. The database is a hash run's saved codes
and relaxed outputs (``--run RUN/bits-48``: real tie structure), tiled to each size with
the outputs jittered, or without a run clustered synthetic 48-bit codes (ten centres, a
few bits flipped: thousands of ties, as in trained codes; ``--flip 0.005``: codes that
collapse onto their centres, a million ties per query at 10M, as the CIFAR-10 codes of
``bench_scale.py``). Re-ranking the ties is timed twice side by side, query by query: as
served (the candidates' outputs compared :data:`~deephash.index.rerank.RANK_CHUNK` rows at a
time) and in one go (every candidate's outputs gathered and compared at once, as before the
chunks), the two checked to give the same top k. Results, with the machine and the command,
go to ``benchmarks/results/rerank.json``; the service's own latency with re-ranking is
``bench_service.py``'s.

    ./run python benchmarks/bench_rerank.py [--run RUN/bits-48] [--sizes 60000 1000000]
          [--queries 200] [--flip 0.08] [--distance euclidean]
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
from deephash.index import rerank as rerank_module
from deephash.index.rerank import CodeRanker


def database(size: int, run: Path | None, rng: np.random.Generator, flip: float = 0.08
             ) -> tuple[np.ndarray, np.ndarray, str]:
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
    flips = rng.random((size, 48)) < flip
    relaxed[flips] *= -1
    return np.packbits(relaxed >= 0, axis=1), relaxed.astype(np.float16), "neg-half-inner"


def time_rankers(rankers: dict[str, tuple[CodeRanker, int]], codes: np.ndarray,
                 outputs: np.ndarray, queries: np.ndarray, k: int) -> dict[str, Any]:
    """Per ranker (name -> the ranker and the RANK_CHUNK it runs with), the p50 and p99
    time of one query, the rankers taking turns query by query; one ranker run with two
    chunks must give the same top k."""
    seconds: dict[str, list[float]] = {name: [] for name in rankers}
    tied = []
    for q in [queries[0], *queries]:  # the first: a warm-up, not counted
        found: dict[int, np.ndarray] = {}
        for name, (ranker, chunk) in rankers.items():
            rerank_module.RANK_CHUNK = chunk
            start = time.perf_counter()
            ranked = ranker.rank(codes[q:q + 1], k, outputs[q:q + 1].astype(np.float32))
            seconds[name].append(time.perf_counter() - start)
            first = found.setdefault(id(ranker), ranked.positions)
            if not np.array_equal(first, ranked.positions):
                raise AssertionError(f"{name} disagrees with itself in chunks on query {q}")
        tied.append(int(ranked.tied[0]))
    rerank_module.RANK_CHUNK = CHUNK
    result = {}
    for name, taken in seconds.items():
        ms = np.array(taken[1:]) * 1000
        result[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3),
                        "p99_ms": round(float(np.percentile(ms, 99)), 3),
                        "tied_at_k_median": float(np.median(tied[1:]))}
    return result


#: the chunk the ranker is served with
CHUNK = rerank_module.RANK_CHUNK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a hash run's bits-<K> folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[60_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flip", type=float, default=0.08, help="synthetic codes: the "
                        "chance of each bit to differ from its centre's")
    parser.add_argument("--distance", default=None, help="the continuous distance of the "
                        "synthetic codes (default neg-half-inner; euclidean: deephash hash's "
                        "default, as bench_scale's model)")
    parser.add_argument("--name", default="rerank", help="results file name")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in args.sizes:
        codes, outputs, distance = database(size, args.run, rng, args.flip)
        if args.run is None and args.distance:
            distance = args.distance
        queries = rng.choice(size, min(args.queries, size), replace=False)
        bits = outputs.shape[1]
        row: dict[str, Any] = {"size": size, "bits": bits, "train_distance": distance}
        rankers = {f"rerank_{rerank}": (CodeRanker(codes, bits, outputs, as_distance(distance),
                                                   rerank), CHUNK) for rerank in ("ties", "none")}
        one_go = rankers["rerank_ties"][0], size  # every candidate at once
        row.update(time_rankers({**rankers, "rerank_ties_one_go": one_go}, codes, outputs,
                                queries, args.k))
        row["ties_one_go_over_chunked"] = round(row["rerank_ties_one_go"]["p50_ms"]
                                                / row["rerank_ties"]["p50_ms"], 2)
        rows.append(row)
    command = " ".join(shlex.quote(word) for word in ["python", *sys.argv])
    write_result(args.name, {"command": command, "k": args.k, "queries": args.queries,
                             "chunk": CHUNK, "flip": args.flip,
                             "run": None if args.run is None else str(args.run), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
