"""Time and peak memory of every metric on 10,000 queries x 50,000 database items.

Goal (issue 2): under 10 s and under 2 GB. Synthetic embeddings with CIFAR-10's shape
(10 balanced classes). Each configuration runs in a fresh process so that peak memory is
that of one evaluation; memory is the peak resident set size above the inputs.

    ./run python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

CASES = [{"dim": 128, "distance": "cosine"}, {"dim": 128, "distance": "euclidean"},
         {"dim": 1280, "distance": "cosine"}]
N_QUERY, N_DATABASE = 10_000, 50_000


def one_case(dim: int, distance: str) -> dict[str, float]:
    from common import reset_peak_rss, rss_mb

    from deephash.metrics import evaluate_retrieval

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, dim)).astype(np.float32)
    yq, yd = np.arange(N_QUERY) % 10, np.arange(N_DATABASE) % 10
    q = centres[yq] + 2.0 * rng.normal(size=(N_QUERY, dim)).astype(np.float32)
    d = centres[yd] + 2.0 * rng.normal(size=(N_DATABASE, dim)).astype(np.float32)
    evaluate_retrieval(q[:200], d, yq[:200], yd, distance)  # warm-up (thread pool, BLAS)
    before = rss_mb("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    report = evaluate_retrieval(q, d, yq, yd, distance)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "peak_extra_mb": round(rss_mb("VmHWM") - before, 1),
            "map@all": round(report.metrics["map@all"], 4)}


def main() -> None:
    if len(sys.argv) > 1:
        case = json.loads(sys.argv[1])
        print(json.dumps(one_case(**case)))
        return
    from common import write_result

    rows = []
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, json.dumps(case)], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append({**case, **json.loads(out)})
        print(rows[-1], flush=True)
    write_result("metrics", {
        "what": f"evaluate_retrieval (kNN@1/5/10, mAP@all, mAP@1000, P@10/100, PR curve), "
                f"{N_QUERY} queries x {N_DATABASE} database items",
        "goal": "seconds < 10 and peak_extra_mb < 2048 (at dim 128)", "cases": rows})


if __name__ == "__main__":
    main()
