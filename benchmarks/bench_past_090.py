"""Past 0.90 on the CPU (issue 22, item 3): the methods table's best method on each
protocol with partial finetuning, one step at a time, at 48 bits.

Each step is one ``deephash hash`` run (its command below, rerunnable as it stands); the
steps run in order into ``--out/<name>`` (a finished run is reused: ``--resume``) and
``benchmarks/results/past_090.json`` stores, per step, the validation and test figures,
the best epoch, the validation curve, training wall-clock and CPU seconds and the load the
run saw (:func:`deephash.machine.load_summary`). The step a reader would pick is the one
with the highest *validation* mAP@all per protocol; test figures are reported, never used
to choose.

The methods come from the methods table (``benchmarks/results/methods.json``), chosen on
its validation figures (mean of 3 seeds at 48 bits): HashNet on ``cifar10``, DPSH with
η = 1 (its grid's validation choice) on ``dtsh-1``. The head (2048 wide) and test-time
flips are the earlier partial-finetuning recipe's (issue 12, docs/findings.md), whose rows
(FaceNet triplets, same budget) are the steps before these: ``EARLIER`` (measured
2026-11-29 on a 2-core AMD EPYC, not rerun here).

    ./run python benchmarks/bench_past_090.py [--steps NAME ...] [--out runs/past-090]
          [--data ../shared/data/cifar10] [--collect-only]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from common import DATA, write_result

from deephash.cli import main as deephash

#: the recipe every step shares: 48 bits, the 2048-wide head, test-time flips
COMMON = ("--bits", "48", "--hidden-dims", "2048", "--test-time-flip", "--mode", "partial",
          "--validate-every", "5")

#: step name -> (protocol, the options that make the step)
STEPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cifar10-hashnet-p3-e30": ("cifar10", ("--method", "hashnet", "--trainable-blocks", "3",
                                           "--epochs", "30")),
    "dtsh1-dpsh-p3-v8-e60": ("dtsh-1", ("--method", "dpsh", "--loss-options", "eta=1",
                                        "--trainable-blocks", "3", "--views", "8",
                                        "--epochs", "60")),
}

#: the steps before these (docs/findings.md, "Past the frozen ceiling"): FaceNet triplets
#: (random-hard, cosine, margin 0.3, quantisation 0.01), same head and flips
EARLIER: list[dict[str, Any]] = [
    {"step": "frozen head, FaceNet triplets, 60 epochs", "protocol": "cifar10",
     "val_map@all": 0.846, "map@all": 0.8525, "train_minutes": None},
    {"step": "partial N = 3, FaceNet triplets, 30 epochs", "protocol": "cifar10",
     "val_map@all": 0.897, "map@all": 0.886, "train_minutes": "110 (under load; ~75 quiet)"},
    {"step": "frozen head, FaceNet triplets, 60 epochs", "protocol": "dtsh-1",
     "val_map@all": 0.805, "map@all": 0.654, "train_minutes": 0.8},
    {"step": "partial N = 3, 8 views, FaceNet triplets, 60 epochs", "protocol": "dtsh-1",
     "val_map@all": 0.833, "map@all": 0.743, "train_minutes": "40 (under load)"},
]


def command(name: str, data: Path, out: Path) -> list[str]:
    protocol, options = STEPS[name]
    return ["hash", "--data-dir", str(data), "--protocol", protocol, *COMMON, *options,
            "--out", str(out / name)]


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(name: str, out: Path) -> dict[str, Any] | None:
    """A finished step's figures (``None`` while it has no metrics.json)."""
    run = out / name / "bits-48"
    metrics, info = _read(run / "metrics.json"), _read(run / "run.json") or {}
    if metrics is None:
        return None
    with (run / "history.csv").open(newline="") as rows:  # one row per epoch
        curve = [[int(h["epoch"]) + 1, round(float(h["val_map"]), 4)]
                 for h in csv.DictReader(rows) if h["val_map"]]
    seconds, cpu = info.get("seconds", {}), info.get("cpu_seconds", {})
    return {"step": name, "protocol": STEPS[name][0],
            "command": "deephash " + " ".join(command(name, Path("DATA"), Path("OUT"))),
            "val_map@all": metrics.get("val_map@all"), "map@all": metrics.get("map@all"),
            "map@1000": metrics.get("map@1000"), "knn_acc@1": metrics.get("knn_acc@1"),
            "prec@r2": metrics.get("prec@r2"), "best_epoch": metrics.get("best_epoch"),
            "validation_curve": curve, "train_wall_s": seconds.get("train"),
            "train_cpu_s": cpu.get("train"), "total_wall_s": seconds.get("total"),
            "load": info.get("load")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", nargs="*", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/past-090"))
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: store the figures of the runs already in --out")
    args = parser.parse_args(argv)
    for name in args.steps:
        if not args.collect_only and collect(name, args.out) is None:
            status = deephash([*command(name, args.data, args.out), "--resume"])
            if status != 0:
                return status
    rows = [row for name in args.steps if (row := collect(name, args.out)) is not None]
    write_result("past_090", {"earlier": EARLIER, "steps": rows,
                              "targets": {"cifar10": 0.91, "dtsh-1": 0.80}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
