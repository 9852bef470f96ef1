"""Multi-label retrieval and unseen classes, measured (issue 21, item 7).

Two settings, each run through the quick study's stages (``deephash study --preset quick``:
frozen Lite0 features at 128 px with flipped views cached, 2 epochs of 60 batches, a
512-wide hidden layer, no t-SNE):

- **multi-label**: the CIFAR-10 mosaics of ``benchmarks/make_multilabel_cifar.py`` (seed 0,
  10,000 database mosaics, 1,000 queries, 5,000 training mosaics; built first if
  ``--mosaics`` does not hold them), read as list files (``--format lists --protocol
  lists``): frozen features (``deephash baseline``), a triplet head (``deephash train
  --loss facenet --miner semi-hard --margin 0.3``, the quick preset's miner stage) and
  48-bit codes (``deephash hash --bits 48``, DTSH's defaults);
- **unseen classes**: CIFAR-10 on ``--protocol cifar10`` and ``--protocol unseen:2`` (two
  classes held out of training; queries and database from them only): the same three and
  the classifier-output codes of a softmax model (``deephash train --loss softmax``'s
  ``classifier_codes_*`` figures, Sablayrolles et al. 2017).

Each table also has the random ranking's expected figures. Every command line is checked
before anything runs. Runs go to ``--runs`` (one folder per setting and method,
overwritten); the figures, the commands, the machine and the README's tables
(``tables.multilabel``, ``tables.unseen_classes``, rendered by
:mod:`deephash.reporting.multilabel`) to ``benchmarks/results/multilabel.json``. With a
warm CIFAR-10 feature cache (the quick study's) the whole benchmark should take well under
30 minutes on 2 cores, most of it extracting the mosaics' features and ranking CIFAR-10's
10,000 queries.

    ./run python benchmarks/bench_multilabel.py [--data ../shared/data/cifar10]
          [--mosaics runs/bench-multilabel/mosaics] [--runs runs/bench-multilabel]
          [--cache-dir DIR]

``--quick`` runs everything at toy sizes (32 px, one epoch of two batches, 60 mosaics) on a
small CIFAR-like tree, for the tests; its results go to ``multilabel-quick.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import DATA, write_result
from make_multilabel_cifar import make_multilabel

from deephash.cli import build_parser
from deephash.cli import main as deephash
from deephash.errors import ConfigError, DeephashError
from deephash.reporting.multilabel import (
    chance_figures,
    multilabel_table,
    run_figures,
    unseen_table,
)

#: how list files are named to the commands (issue 21, item 3): the one place to change
LIST_FORMAT = ("--format", "lists")
LIST_PROTOCOL = ("--protocol", "lists")
UNSEEN = "unseen:2"
CODE_BITS = "48"
#: a finished run's command line, in its folder: an interrupted benchmark reruns only the
#: runs that did not finish with the same command
FINISHED = "bench-command.txt"
#: the command and options of each method (frozen features, triplet head, codes, classifier)
METHODS = {"frozen": ("baseline",),
           "triplet": ("train", "--loss", "facenet", "--miner", "semi-hard", "--margin", "0.3"),
           "codes": ("hash", "--bits", CODE_BITS),
           "classifier": ("train", "--loss", "softmax")}


@dataclass(frozen=True)
class Budget:
    """Options of every command, options of the training ones, and the mosaics' sizes."""

    extraction: tuple[str, ...]
    training: tuple[str, ...]
    mosaics: dict[str, int]


#: the quick preset's settings (src/deephash/studies/presets/quick.yaml), t-SNE off
QUICK_STUDY = Budget(("--flip-views", "--tsne-points", "0"),
                     ("--epochs", "2", "--batches-per-epoch", "60", "--hidden-dims", "512"),
                     {"database": 10_000, "queries": 1_000, "train": 5_000})
#: --quick: seconds per run on a small tree (the tests' settings)
TOY = Budget(("--image-size", "32", "--num-workers", "0", "--tsne-points", "0",
              "--no-flip-views"),
             ("--epochs", "1", "--batches-per-epoch", "2", "--batch-classes", "2",
              "--batch-samples", "4", "--hidden-dims", "16", "--no-flip-augment"),
             {"database": 60, "queries": 8, "train": 40})


@dataclass(frozen=True)
class Setting:
    """A data set and protocol, and the methods run on it."""

    name: str
    data: tuple[str, ...]
    methods: tuple[str, ...]
    #: options of its training commands (``unseen:2`` trains on 8 classes: P = 8 per batch)
    training: tuple[str, ...] = ()


def settings(mosaics: Path, cifar: Path) -> list[Setting]:
    """The multi-label setting, then CIFAR-10 on its standard and unseen-class protocols."""
    return [Setting("multilabel", ("--data-dir", str(mosaics), *LIST_FORMAT, *LIST_PROTOCOL),
                    ("frozen", "triplet", "codes")),
            Setting("cifar10", ("--data-dir", str(cifar), "--protocol", "cifar10"),
                    tuple(METHODS)),
            Setting(UNSEEN, ("--data-dir", str(cifar), "--protocol", UNSEEN), tuple(METHODS),
                    ("--batch-classes", "8"))]


def command_line(setting: Setting, method: str, runs: Path, cache: Path | None,
                 budget: Budget) -> list[str]:
    """The ``deephash`` arguments of ``method`` on ``setting``."""
    command, *options = METHODS[method]
    return [command, *setting.data, *options, "--out", str(run_folder(runs, setting, method)),
            "--overwrite", "--seed", "0", *(["--cache-dir", str(cache)] if cache else []),
            *budget.extraction,
            *((*setting.training, *budget.training) if command != "baseline" else ())]


def run_folder(runs: Path, setting: Setting, method: str) -> Path:
    return runs / setting.name.replace(":", "-") / method


def result_folder(runs: Path, setting: Setting, method: str) -> Path:
    """Where the run's metrics.json is (a hash run: its ``bits-K``)."""
    folder = run_folder(runs, setting, method)
    return folder / f"bits-{CODE_BITS}" if method == "codes" else folder


def check_command(argv: list[str]) -> None:
    """``ConfigError`` naming the command if ``deephash`` would refuse its options (parsed
    only: the mosaics may not exist yet)."""
    refused = io.StringIO()
    try:
        with contextlib.redirect_stderr(refused):
            build_parser().parse_args(argv)
    except SystemExit:
        message = refused.getvalue().strip().splitlines()[-1:] or ["refused"]
        raise ConfigError(f"deephash {shlex.join(argv)}: {message[0]}") from None


def ensure_mosaics(cifar: Path, mosaics: Path, sizes: dict[str, int], seed: int = 0) -> dict:
    """Build the stand-in in ``mosaics`` unless it is there; its record either way (an
    existing one must have been built with ``sizes`` and ``seed``)."""
    record_path = mosaics / "mosaics.json"
    if not record_path.is_file():
        make_multilabel(cifar, mosaics, seed, sizes["database"], sizes["queries"],
                        sizes["train"])
    record = json.loads(record_path.read_text())
    wanted = {"database": sizes["database"], "query": sizes["queries"], "train": sizes["train"]}
    if record["seed"] != seed or record["sizes"] != wanted:
        raise ConfigError(f"{mosaics} holds mosaics of seed {record['seed']}, sizes "
                          f"{record['sizes']}; this benchmark needs seed {seed}, {wanted}: "
                          "remove the folder or give another --mosaics")
    return {key: record[key] for key in ("source", "seed", "sizes")}


def measure(cifar: Path, mosaics: Path, runs: Path, cache: Path | None,
            budget: Budget) -> dict[str, Any]:
    """Run every setting's methods; their figures, the chance rows and the tables."""
    plan = [(setting, method, command_line(setting, method, runs, cache, budget))
            for setting in settings(mosaics, cifar) for method in setting.methods]
    for _, _, argv in plan:
        check_command(argv)
    built = ensure_mosaics(cifar, mosaics, budget.mosaics)
    figures: dict[str, dict[str, Any]] = {}
    commands: dict[str, dict[str, str]] = {}
    for setting, method, argv in plan:
        done = run_folder(runs, setting, method) / FINISHED
        if done.is_file() and done.read_text() == shlex.join(argv):
            print(f"reused: deephash {shlex.join(argv)}", flush=True)
        else:
            print(f"deephash {shlex.join(argv)}", flush=True)
            if deephash(argv) != 0:
                raise SystemExit(f"failed: deephash {shlex.join(argv)}")
            done.write_text(shlex.join(argv))
        figures.setdefault(setting.name, {})[method] = run_figures(
            result_folder(runs, setting, method), method)
        commands.setdefault(setting.name, {})[method] = f"deephash {shlex.join(argv)}"
    chance = {setting.name: chance_figures(result_folder(runs, setting, "frozen"))
              for setting in settings(mosaics, cifar)}
    unseen = {name: figures[name] for name in ("cifar10", UNSEEN)}
    return {"mosaics": built, "runs": figures, "chance": chance, "commands": commands,
            "tables": {"multilabel": multilabel_table(figures["multilabel"],
                                                      chance["multilabel"]),
                       "unseen_classes": unseen_table(unseen, {n: chance[n] for n in unseen})}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="CIFAR-10 image-folder tree")
    parser.add_argument("--mosaics", type=Path, default=Path("runs/bench-multilabel/mosaics"),
                        help="the multi-label stand-in (built here when missing)")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-multilabel"),
                        help="run folders (overwritten)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="feature cache (default: deephash's)")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes on a small tree, for the tests")
    args = parser.parse_args(argv)
    budget = TOY if args.quick else QUICK_STUDY
    try:
        result = measure(args.data.resolve(), args.mosaics, args.runs, args.cache_dir, budget)
    except DeephashError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv)
    write_result("multilabel-quick" if args.quick else "multilabel",
                 {"command": command, "budget": {"extraction": list(budget.extraction),
                                                 "training": list(budget.training)},
                  **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
