"""Cost of the data fingerprint on the CIFAR-10 mirror: the content digest (every file's
bytes, what the feature cache keys on), the stat digest (names, sizes, mtimes: what the
memo is keyed on) and a memoised call. Rounds alternate; medians are reported. The page
cache is warm after the first round, so these are warm-cache figures.

    ./run python benchmarks/bench_fingerprint.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from deephash.data import open_dataset
from deephash.data.fingerprint import content_digest, content_fingerprint, stat_digest


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    from common import DATA, write_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dataset = open_dataset(str(DATA))
    root, names = dataset.root, dataset.paths  # type: ignore[attr-defined]
    content_digest(root, names)  # warm the page cache
    times: dict[str, list[float]] = {"content": [], "stat": [], "memoised": []}
    with tempfile.TemporaryDirectory() as memo:
        content_fingerprint(root, names, Path(memo))
        for _ in range(args.rounds):
            times["content"].append(timed(lambda: content_digest(root, names)))
            times["stat"].append(timed(lambda: stat_digest(root, names)))
            times["memoised"].append(
                timed(lambda: content_fingerprint(root, names, Path(memo))))
    medians = {f"{key}_s": statistics.median(values) for key, values in times.items()}
    size = sum((root / name).stat().st_size for name in names)
    write_result("fingerprint", {"files": len(names), "megabytes": size / 1e6, **medians,
                                 "rounds": args.rounds})


if __name__ == "__main__":
    main()
