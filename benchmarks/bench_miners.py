"""Each miner against pytorch-metric-learning's nearest equivalent, side by side.

Batches of P classes x 8 images (B = 64, 256, 1024), 128-d unit embeddings. Each timing
includes the distance matrix (PML computes it inside its miners). Ours and PML's run
alternately, ``--rounds`` times; medians are compared. Peak memory is the growth of the
process's peak resident set during one call. Goal (issue 3): >= 5x faster than PML for
semi-hard and batch-all at B = 256.

PML equivalents: batch-all <-> TripletMarginMiner("all", margin=inf) (the same triplets);
batch-hard <-> BatchHardMiner (the same triplets); semi-hard <-> TripletMarginMiner
("semihard") and random-hard <-> TripletMarginMiner("all"), which return every qualifying
triplet where ours picks one per anchor-positive pair from the same candidates;
distance-weighted <-> DistanceWeightedMiner; all-pairs <-> PairMarginMiner with no margin in
the way (every pair, in both orders; counted once each); curriculum (ours), hard-pairs and the
offline miners have none. ``triplets`` counts the mined tuples (pairs for pair miners).

    ./run python benchmarks/bench_miners.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from pytorch_metric_learning import miners as pml
from pytorch_metric_learning.distances import LpDistance

from deephash.losses.distances import EuclideanDistance
from deephash.miners import MINERS, MiningBatch, create_miner

MARGIN = 0.2


def pml_equivalent(name: str) -> Callable[[torch.Tensor, torch.Tensor], object] | None:
    distance = LpDistance(normalize_embeddings=False)
    table = {
        "batch-all": lambda: pml.TripletMarginMiner(margin=1e9, type_of_triplets="all",
                                                    distance=distance),
        "batch-hard": lambda: pml.BatchHardMiner(distance=distance),
        "semi-hard": lambda: pml.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard",
                                                    distance=distance),
        "random-hard": lambda: pml.TripletMarginMiner(margin=MARGIN, type_of_triplets="all",
                                                      distance=distance),
        "distance-weighted": lambda: pml.DistanceWeightedMiner(),
        # every pair, in both orders (ours: each unordered pair once)
        "all-pairs": lambda: pml.PairMarginMiner(pos_margin=-1.0, neg_margin=1e9,
                                                 distance=distance),
    }
    return table[name]() if name in table else None  # type: ignore[return-value]


def batch_of(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(size)
    labels = torch.arange(size // 8).repeat_interleave(8)
    return torch.nn.functional.normalize(torch.randn(size, 128), dim=1), labels


def runner(name: str, implementation: str, x: torch.Tensor,
           labels: torch.Tensor) -> Callable[[], int] | None:
    """A call of our miner (distance matrix included) or of PML's equivalent."""
    if implementation == "ours":
        miner = create_miner(name, MARGIN)
        return lambda: len(miner.mine(MiningBatch(EuclideanDistance().matrix(x), labels, x)))
    theirs = pml_equivalent(name)
    if theirs is None:
        return None
    return lambda: pml_count(theirs(x, labels))


def pml_count(mined: tuple[torch.Tensor, ...]) -> int:
    """Triplets, or for PML's pair miners (a1, p, a2, n) the unordered pairs (each comes
    in both orders)."""
    if len(mined) == 4:
        return (len(mined[0]) + len(mined[2])) // 2
    return len(mined[0])


def peak_mb(name: str, implementation: str, size: int) -> float:
    """Peak resident-set growth of one call, measured in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--memory", name, implementation, str(size)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def memory_probe(name: str, implementation: str, size: int) -> None:
    from common import reset_peak_rss, rss_mb

    x, labels = batch_of(size)
    call = runner(name, implementation, x, labels)
    assert call is not None
    before = rss_mb("VmRSS")
    reset_peak_rss()
    call()
    print(round(max(rss_mb("VmHWM") - before, 0.0), 1))


def measure(name: str, size: int, rounds: int) -> dict[str, object]:
    """Alternating timings of our miner and PML's equivalent on one batch."""
    x, labels = batch_of(size)
    ours = runner(name, "ours", x, labels)
    pml_run = runner(name, "pml", x, labels)
    assert ours is not None
    ours()
    ours_times, pml_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        n_ours = ours()
        ours_times.append(time.perf_counter() - start)
        if pml_run is not None:
            start = time.perf_counter()
            n_pml = pml_run()
            pml_times.append(time.perf_counter() - start)
    row: dict[str, object] = {"batch": size, "miner": name, "triplets": n_ours,
                              "ours_ms": round(1e3 * statistics.median(ours_times), 3),
                              "ours_peak_mb": peak_mb(name, "ours", size)}
    if pml_run is not None:
        row.update({"pml_triplets": n_pml, "pml_ms": round(1e3 * statistics.median(pml_times), 3),
                    "pml_peak_mb": peak_mb(name, "pml", size),
                    "speedup": round(statistics.median(pml_times) / statistics.median(ours_times),
                                     2)})
    return row


def main() -> None:
    from common import write_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--memory", nargs=3, metavar=("MINER", "IMPL", "SIZE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        memory_probe(args.memory[0], args.memory[1], int(args.memory[2]))
        return
    rows = []
    for size in args.sizes:
        for name in MINERS.names():
            heavy = size >= 1024 and name in ("batch-all", "random-hard")
            rows.append(measure(name, size, 1 if heavy else args.rounds))
            print(rows[-1], flush=True)
    write_result("miners", {
        "what": "miner time (distance matrix included) and peak memory, ours vs "
                "pytorch-metric-learning 2.9.0, P x 8 batches of 128-d unit embeddings",
        "goal": "speedup >= 5 for semi-hard and batch-all at batch 256", "rows": rows})


if __name__ == "__main__":
    main()
