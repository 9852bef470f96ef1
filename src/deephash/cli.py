"""The ``deephash`` command: each subcommand parses arguments and calls one library function.

Building the parser imports no torch: the configs are torch-free dataclasses, the names
come from :mod:`deephash.registries`, and a subcommand's library module is imported only
when it runs. Every option is checked (:func:`deephash.validation.validate`) before the
library function starts; a bad one is a single ``deephash: error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from deephash.config import add_arguments, apply_arguments, load_yaml
from deephash.errors import DeephashError
from deephash.registries import LISTABLE
from deephash.registry import Lazy
from deephash.studies.baseline_config import BaselineConfig
from deephash.studies.configs import (
    HashConfig,
    IndexConfig,
    LossStudyConfig,
    MinerStudyConfig,
    PackConfig,
    ScheduleStudyConfig,
    SearchConfig,
    SelectMarginConfig,
)
from deephash.studies.report_config import ReportConfig
from deephash.training.config import TrainConfig


class Command(NamedTuple):
    """A subcommand: its config dataclass, its library function (``"module:function"``,
    imported when it runs) and a one-line description."""

    config: type
    function: str
    text: str


COMMANDS: dict[str, Command] = {
    "baseline": Command(BaselineConfig, "deephash.studies.baseline:run_baseline",
                        "measure frozen pretrained features on a protocol: metrics, splits, "
                        "embeddings, PR curve and t-SNE in a run folder"),
    "train": Command(TrainConfig, "deephash.studies.train:run_train",
                     "train an embedding with a triplet loss and an online miner, keep the "
                     "best epoch on validation, evaluate it on the test protocol"),
    "select-margin": Command(SelectMarginConfig, "deephash.studies.select_margin:run_select_margin",
                             "train each margin of a grid, choose on validation, test the "
                             "winner once"),
    "miner-study": Command(MinerStudyConfig, "deephash.studies.miner_study:run_miner_study",
                           "compare miners (online and offline) at equal loss, margin, budget "
                           "and seed"),
    "loss-study": Command(LossStudyConfig, "deephash.studies.loss_study:run_loss_study",
                          "compare the baseline and each loss, each with its selected margin"),
    "hash": Command(HashConfig, "deephash.studies.hash:run_hash",
                    "train compact binary codes (one run folder per code length) and measure "
                    "them with Hamming distance, tie-aware"),
    "schedule-study": Command(ScheduleStudyConfig,
                              "deephash.studies.schedule_study:run_schedule_study",
                              "compare hyperparameter schedules of a hashing loss (e.g. margin "
                              "1 -> 16 against a fixed 16) at equal epochs and seeds, on the "
                              "sign codes"),
    "index": Command(IndexConfig, "deephash.studies.search:build_index",
                     "index an image folder with a trained model (codes or embeddings)"),
    "search": Command(SearchConfig, "deephash.studies.search:search_image",
                      "print the k nearest indexed images to a query image"),
    "report": Command(ReportConfig, "deephash.reporting:run_report",
                      "write report.html (self-contained: plots and thumbnails embedded, "
                      "opens offline) and report.md from finished run folders"),
    "pack": Command(PackConfig, "deephash.studies.pack:run_pack",
                    "write a data set into one file (its images' own encoded bytes, labels, "
                    "classes and order), readable by every command as --data-dir FILE"),
}


def build_config(command: str, args: argparse.Namespace) -> Any:
    """The subcommand's config: ``--config`` (or the defaults), then the given flags, checked."""
    from deephash.validation import validate

    config_type = COMMANDS[command].config
    config = load_yaml(config_type, Path(args.config)) if args.config else config_type()
    config = apply_arguments(config, args)
    validate(config)
    return config


def _run(args: argparse.Namespace) -> int:
    config = build_config(args.command, args)
    Lazy(COMMANDS[args.command].function).resolve()(config)
    return 0


def _list(args: argparse.Namespace) -> int:
    kinds = [args.what] if args.what else list(LISTABLE)
    for kind in kinds:
        names = list(LISTABLE[kind])
        print("\n".join(names) if args.what else f"{kind}: {', '.join(names)}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage above its error message (``--help`` has the rest)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"usage: {self.prog} [-h] [options] (see {self.prog} --help)\n"
                     f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deephash", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.text, description=command.text)
        sub.add_argument("--config", help="YAML config to start from (e.g. a run's config.yaml)")
        add_arguments(sub, command.config)
        sub.set_defaults(handler=_run)
    listing = subparsers.add_parser("list", help="list registered components (all kinds "
                                                 "without an argument)")
    listing.add_argument("what", nargs="?", choices=tuple(LISTABLE))
    listing.set_defaults(handler=_list)
    return parser


#: the commands that run as several processes under torchrun (deephash.distributed)
DISTRIBUTED_COMMANDS = ("train", "hash")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank, world = (os.environ.get(name, default) for name, default in (("RANK", "0"),
                                                                        ("WORLD_SIZE", "1")))
    quiet = rank not in ("0", "")  # under torchrun, rank 0 alone reports
    logging.basicConfig(level=logging.WARNING if quiet else logging.DEBUG if args.verbose
                        else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    if world not in ("1", "") and args.command not in DISTRIBUTED_COMMANDS:
        print(f"deephash: error: {args.command} runs in one process; under torchrun (WORLD_SIZE "
              f"{world}) only {' and '.join(DISTRIBUTED_COMMANDS)} do", file=sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except DeephashError as exc:
        print(f"deephash: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deephash: interrupted; finished feature shards and last.pt are kept, and a "
              "rerun (train: --resume) continues", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
