"""What a user is shown, measured: P@10, P@100 and mAP@1000 of hash runs as served.

For each hash run folder (``bits-<K>``, whose ``codes/query.npz`` and ``database.npz`` keep
the relaxed outputs) the queries are ranked as ``search``, ``serve`` and the gallery rank
them (Hamming, ties by the relaxed outputs), with ties in index order (what was served
before), with ties at random, by the tie-aware expectation of the codes (``metrics.json``'s
figures) and by the relaxed outputs alone; plus the median number of items tied at the 10th
result's distance (:mod:`deephash.reporting.served`). Results, with the machine and the
command, go to ``benchmarks/results/served_ranking.json``; its ``tables.served_ranking`` is
the generated table of docs/service.md (``python -m deephash.reporting.readme``).

    ./run python benchmarks/bench_served_ranking.py NAME=RUN_FOLDER [NAME=RUN_FOLDER ...]
          [--queries 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from common import write_result

from deephash.errors import ConfigError
from deephash.reporting.runs import read_run
from deephash.reporting.served import measure_run, served_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_FOLDER",
                        help="a table name and a hash run's bits-<K> folder")
    parser.add_argument("--queries", type=int, default=None,
                        help="seeded subset of the queries (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="served_ranking", help="results file name")
    args = parser.parse_args(argv)
    results = {}
    for given in args.runs:
        name, _, folder = given.rpartition("=")
        run = read_run(Path(folder))
        if run is None:
            raise ConfigError(f"{folder} is not a finished run folder (no metrics.json)")
        results[name or folder] = measure_run(run, args.queries, args.seed)
    command = " ".join(shlex.quote(word) for word in ["python", *sys.argv])
    write_result(args.name, {"command": command, "queries": args.queries, "seed": args.seed,
                             "runs": results,
                             "tables": {"served_ranking": served_table(results)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
