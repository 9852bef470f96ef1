"""The miner comparison's speed ranking, alone on the machine and beside a CPU load
(issue 26): does the CPU-time ranking of interleaved miners under load match the quiet one?

The quick study's miner stage (``--preset quick``: batch-hard, semi-hard and random-hard
with FaceNet at margin 0.3, 2 epochs of 60 batches on CIFAR-10's frozen features; t-SNE
left out), each run a fresh ``deephash miner-study`` process:

1. quiet, one miner after the other;
2. quiet, interleaved (``--interleave``);
3. quiet, one after the other, with OpenMP's default waiting (``GOMP_SPINCOUNT=300000``:
   idle threads spin before they sleep) instead of the passive policy deephash sets
   (:mod:`deephash.omp`): what the passive policy costs or gains on a quiet machine;
4. beside a load, one after the other;
5. beside a load, interleaved.

The load is started by the benchmark itself: one process per usable core, each spinning,
started before run 4 and stopped after run 5 (each also stops itself after ``--load-limit``
seconds and when the benchmark is gone). For each run: every miner's training time on
both clocks (``run.json``: wall-clock ``seconds``, CPU ``cpu_seconds``), the ranking by
each, the machine's load while it trained, and whether the scores (``study.json``) are the
quiet run's to the byte. The verdicts: whether the interleaved CPU-time ranking under load
is the quiet one, strictly and up to the quiet runs' own noise (two miners whose quiet CPU
times differ by less than the two quiet runs disagree count as tied).

    ./run python benchmarks/bench_timing_under_load.py --data-dir ../shared/data/cifar10 \
        [--cache-dir DIR]     # about 10 minutes on 2 cores with the features cached
    ./run python benchmarks/bench_timing_under_load.py --tiny   # a dry run, minutes

Results: ``benchmarks/results/timing_under_load.json`` (``--tiny``:
``timing_under_load_tiny.json``), with the CPU model and the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import write_result

from deephash.config import variant
from deephash.machine import usable_cores
from deephash.studies.configs import MinerStudyConfig
from deephash.studies.run_folder import save_config
from deephash.studies.study import build_stages, read_study
from deephash.studies.study_config import StudyConfig

#: OpenMP's own default: idle threads spin about 3 ms before they sleep
SPINNING = {"GOMP_SPINCOUNT": "300000"}


def spin(deadline: float, parent: int) -> None:
    """Keep one core busy until ``deadline`` or until the benchmark is gone."""
    while time.time() < deadline and os.getppid() == parent:
        for _ in range(200_000):
            pass


class Load:
    """One spinning process per usable core while the ``with`` block runs."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.processes: list[multiprocessing.Process] = []

    def __enter__(self) -> Load:
        deadline = time.time() + self.limit
        self.processes = [multiprocessing.Process(target=spin, args=(deadline, os.getpid()),
                                                  daemon=True) for _ in range(usable_cores())]
        for process in self.processes:
            process.start()
        time.sleep(5)  # the 1-minute load average starts to rise
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)


def stage_config(args: argparse.Namespace, scratch: Path) -> MinerStudyConfig:
    """The quick preset's miner stage (``--tiny``: shrunk to a generated image folder)."""
    data = args.data_dir
    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import make_image_folder

        data = str(make_image_folder(scratch / "data", n_classes=3, n_train=12, n_test=4))
    study = StudyConfig(preset="quick", out=str(scratch / "study"), data_dir=data,
                        cache_dir=args.cache_dir or str(scratch / "cache"))
    stage = next(s for s in build_stages(study, read_study(study)) if s.command == "miner-study")
    config: MinerStudyConfig = stage.config
    config = variant(config, MinerStudyConfig, evaluation={"tsne_points": 0},
                     interleave=False)  # each run's order is given by --interleave
    if args.tiny:
        config = variant(config, MinerStudyConfig, backbone={"image_size": 32},
                         extraction={"num_workers": 0, "flip_views": False},
                         training={"epochs": 3, "batches_per_epoch": 4, "batch_classes": 3,
                                   "batch_samples": 4, "hidden_dims": (16,),
                                   "flip_augment": False})
    return config


def run_study(config_path: Path, out: Path, interleave: bool, env: dict[str, str]
              ) -> dict[str, Any]:
    """One ``deephash miner-study`` process; its times, load and scores."""
    command = [sys.executable, "-m", "deephash", "miner-study", "--config", str(config_path),
               "--out", str(out), *(["--interleave"] if interleave else [])]
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    started = time.perf_counter()
    subprocess.run(command, env={**environment, **env}, check=True)
    wall = time.perf_counter() - started
    info = json.loads((out / "run.json").read_text())
    miners = [row["miner"] for row in json.loads((out / "study.json").read_text())["rows"]]
    times = {clock: {m: info[key][f"{m}.train_seconds"] for m in miners}
             for clock, key in (("wall", "seconds"), ("cpu", "cpu_seconds"))}
    return {"interleave": interleave, "env": env, "process_seconds": round(wall, 1),
            "train_seconds": times, "seconds_per_epoch": {
                clock: {m: info[key][f"{m}.seconds_per_epoch"] for m in miners}
                for clock, key in (("wall", "seconds"), ("cpu", "cpu_seconds"))},
            "ranking": {clock: sorted(miners, key=times[clock].__getitem__)
                        for clock in times},
            "load": info.get("load"), "omp_wait": info["machine"].get("omp_wait"),
            "study_json": (out / "study.json").read_text()}


def agrees_up_to_noise(quiet: dict[str, float], other: dict[str, float],
                       noise: float) -> bool:
    """Whether ``other`` orders every pair of miners the way ``quiet`` does, leaving out
    pairs whose quiet times differ by no more than ``noise`` (relative): a tie."""
    names = sorted(quiet)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            gap = abs(quiet[a] - quiet[b]) / max(quiet[a], quiet[b])
            if gap > noise and (quiet[a] < quiet[b]) != (other[a] < other[b]):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/cifar10")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: scratch)")
    parser.add_argument("--tiny", action="store_true", help="a dry run on generated images")
    parser.add_argument("--load-limit", type=float, default=1800,
                        help="seconds after which the load stops itself")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="timing-under-load-") as name:
        scratch = Path(name)
        config = stage_config(args, scratch)
        config_path = scratch / "miners.yaml"
        save_config(dataclasses.replace(config, out=str(scratch / "unused")), config_path)
        runs: dict[str, dict[str, Any]] = {}
        plan = [("quiet_sequential", False, {}), ("quiet_interleaved", True, {}),
                ("quiet_sequential_spinning", False, SPINNING)]
        for label, interleave, env in plan:
            print(f"--- {label}", flush=True)
            runs[label] = run_study(config_path, scratch / label, interleave, env)
        with Load(args.load_limit):
            for label, interleave in (("loaded_sequential", False),
                                      ("loaded_interleaved", True)):
                print(f"--- {label}", flush=True)
                runs[label] = run_study(config_path, scratch / label, interleave, {})
    quiet, again = (runs[k]["train_seconds"]["cpu"] for k in ("quiet_sequential",
                                                               "quiet_interleaved"))
    noise = max(abs(quiet[m] - again[m]) / max(quiet[m], again[m]) for m in quiet)
    scores = {run.pop("study_json") for run in runs.values()}
    ranking = {label: run["ranking"] for label, run in runs.items()}
    verdict = {
        "scores_identical_in_every_run": len(scores) == 1,
        "quiet_cpu_noise": round(noise, 4),
        "interleaved_cpu_ranking_under_load_matches_quiet":
            ranking["loaded_interleaved"]["cpu"] == ranking["quiet_sequential"]["cpu"],
        "interleaved_cpu_ranking_under_load_matches_quiet_up_to_noise": agrees_up_to_noise(
            quiet, runs["loaded_interleaved"]["train_seconds"]["cpu"], noise),
        **{f"{label}_{clock}_ranking_matches_quiet": ranking[label][clock]
           == ranking["quiet_sequential"][clock]
           for label in ("loaded_sequential", "loaded_interleaved") for clock in ("wall", "cpu")},
        "slowdown_under_load": {
            label: {clock: {m: round(runs[label]["train_seconds"][clock][m]
                                     / runs["quiet_sequential"]["train_seconds"][clock][m], 2)
                            for m in quiet} for clock in ("wall", "cpu")}
            for label in ("loaded_sequential", "loaded_interleaved")},
        "passive_over_spinning_quiet_wall": {
            m: round(runs["quiet_sequential"]["train_seconds"]["wall"][m]
                     / runs["quiet_sequential_spinning"]["train_seconds"]["wall"][m], 3)
            for m in quiet},
    }
    write_result("timing_under_load_tiny" if args.tiny else "timing_under_load", {
        "command": " ".join(["python", *sys.argv]), "tiny": args.tiny,
        "miners": config.miners, "training": dataclasses.asdict(config.training),
        "load_processes": usable_cores(), "verdict": verdict, "runs": runs})


if __name__ == "__main__":
    main()
