"""Hamming search, tie-aware evaluation and the DTSH loss, timed.

1. Top-k search (k = 100) of 10,000 48-bit queries in 50,000 and 1,000,000 codes
   (synthetic for the large one): our exact numpy index against faiss ``IndexBinaryFlat``,
   alternating, medians of ``--rounds``. Goal (issue 4): within 1.2x of faiss, or use
   faiss where it wins.
2. Every code metric (tie-aware and index-order) on 10,000 x 50,000 48-bit codes.
3. The DTSH loss over all triplets of a 256-image batch (32 classes x 8), forward and
   backward, with the peak memory of one step in a fresh process.

    ./run python benchmarks/bench_hashing.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from deephash.index import create_index
from deephash.losses import create_loss
from deephash.metrics.evaluate_codes import evaluate_codes
from deephash.miners import BatchAllMiner, MiningBatch

BITS = 48


def random_codes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, BITS // 8), dtype=np.uint8)


def search_rows(rounds: int) -> list[dict[str, object]]:
    queries = random_codes(10_000, 1)
    rows = []
    for size in (50_000, 1_000_000):
        database = random_codes(size, 2)
        indexes = {}
        for factory in ("BFlat-numpy", "BFlat"):
            indexes[factory] = create_index(factory, BITS)
            indexes[factory].add(database)
        times: dict[str, list[float]] = {f: [] for f in indexes}
        for _ in range(rounds):
            for factory, index in indexes.items():
                start = time.perf_counter()
                index.search(queries, 100)
                times[factory].append(time.perf_counter() - start)
        ours, faiss_s = (statistics.median(times[f]) for f in ("BFlat-numpy", "BFlat"))
        rows.append({"database": size, "ours_s": round(ours, 2), "faiss_s": round(faiss_s, 2),
                     "ours_over_faiss": round(ours / faiss_s, 2)})
        print(rows[-1], flush=True)
    return rows


def evaluation_row() -> dict[str, object]:
    rng = np.random.default_rng(0)
    labels_q, labels_d = rng.integers(0, 10, 10_000), rng.integers(0, 10, 50_000)
    centres = rng.random((10, BITS)) < 0.5
    flip = lambda n: rng.random((n, BITS)) < 0.15  # noqa: E731
    q = np.packbits(centres[labels_q] ^ flip(10_000), axis=1)
    d = np.packbits(centres[labels_d] ^ flip(50_000), axis=1)
    start = time.perf_counter()
    report = evaluate_codes(q, d, labels_q, labels_d, BITS, index_order=True)
    return {"queries": 10_000, "database": 50_000, "seconds": round(time.perf_counter() - start, 2),
            "map@all": round(report.metrics["map@all"], 4)}


def dtsh_step(batch: int = 256) -> float:
    torch.manual_seed(0)
    labels = torch.arange(batch // 8).repeat_interleave(8)
    u = torch.tanh(torch.randn(batch, BITS)).requires_grad_()
    loss = create_loss("dtsh", 12.0, "neg-half-inner")
    start = time.perf_counter()
    distances = loss.distance.matrix(u)
    triplets = BatchAllMiner().mine(MiningBatch(distances.detach(), labels, u.detach()))
    loss(distances, triplets).loss.backward()
    return time.perf_counter() - start


def main() -> None:
    from common import reset_peak_rss, rss_mb, write_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtsh-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dtsh_memory:
        dtsh_step(64)  # warm-up, then measure one step
        before = rss_mb("VmRSS")
        reset_peak_rss()
        dtsh_step()
        print(round(rss_mb("VmHWM") - before, 1))
        return
    search = search_rows(args.rounds)
    evaluation = evaluation_row()
    print(evaluation, flush=True)
    dtsh_step(64)
    step_ms = statistics.median(dtsh_step() for _ in range(5)) * 1e3
    memory = float(subprocess.run([sys.executable, __file__, "--dtsh-memory"], check=True,
                                  capture_output=True, text=True).stdout.split()[-1])
    write_result("hashing", {
        "what": f"{BITS}-bit codes: top-100 search, all code metrics, DTSH step at batch 256",
        "search": search, "evaluation": evaluation,
        "dtsh_batch_256": {"triplets": 32 * 8 * 7 * 31 * 8, "step_ms": round(step_ms, 1),
                           "peak_mb": memory},
        "goal": "search within 1.2x of faiss IndexBinaryFlat (else use faiss); DTSH memory "
                "not O(B^3)"})


if __name__ == "__main__":
    main()
