"""The ``deephash`` command: each subcommand parses arguments and calls one library function."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deephash.config import add_arguments, apply_arguments, load_yaml
from deephash.errors import DeephashError

#: subcommand -> (config dataclass, library function, one-line description)
Command = tuple[type, Callable[[Any], Any], str]


def commands() -> dict[str, Command]:
    from deephash.studies.baseline import run_baseline
    from deephash.studies.baseline_config import BaselineConfig
    from deephash.studies.hash import HashConfig, run_hash
    from deephash.studies.loss_study import LossStudyConfig, run_loss_study
    from deephash.studies.miner_study import MinerStudyConfig, run_miner_study
    from deephash.studies.schedule_study import ScheduleStudyConfig, run_schedule_study
    from deephash.studies.search import IndexConfig, SearchConfig, build_index, search_image
    from deephash.studies.select_margin import SelectMarginConfig, run_select_margin
    from deephash.studies.train import run_train
    from deephash.training.config import TrainConfig

    return {
        "baseline": (BaselineConfig, run_baseline,
                     "measure frozen pretrained features on a protocol: metrics, splits, "
                     "embeddings, PR curve and t-SNE in a run folder"),
        "train": (TrainConfig, run_train,
                  "train an embedding with a triplet loss and an online miner, keep the best "
                  "epoch on validation, evaluate it on the test protocol"),
        "select-margin": (SelectMarginConfig, run_select_margin,
                          "train each margin of a grid, choose on validation, test the winner "
                          "once"),
        "miner-study": (MinerStudyConfig, run_miner_study,
                        "compare miners (online and offline) at equal loss, margin, budget "
                        "and seed"),
        "loss-study": (LossStudyConfig, run_loss_study,
                       "compare the baseline and each loss, each with its selected margin"),
        "hash": (HashConfig, run_hash,
                 "train compact binary codes (one run folder per code length) and measure "
                 "them with Hamming distance, tie-aware"),
        "schedule-study": (ScheduleStudyConfig, run_schedule_study,
                           "compare hyperparameter schedules of a hashing loss (e.g. margin "
                           "1 -> 16 against a fixed 16) at equal epochs and seeds, on the sign "
                           "codes"),
        "index": (IndexConfig, build_index,
                  "index an image folder with a trained model (codes or embeddings)"),
        "search": (SearchConfig, search_image,
                   "print the k nearest indexed images to a query image"),
    }


def _run(args: argparse.Namespace) -> int:
    config_type, function, _ = commands()[args.command]
    config = load_yaml(config_type, Path(args.config)) if args.config else config_type()
    function(apply_arguments(config, args))
    return 0


def _list(args: argparse.Namespace) -> int:
    from deephash.backbones import BACKBONES
    from deephash.data import PROTOCOLS
    from deephash.losses import LOSSES
    from deephash.miners import MINERS

    registries = {"backbones": BACKBONES, "protocols": PROTOCOLS, "losses": LOSSES,
                  "miners": MINERS}
    print("\n".join(registries[args.what].names()))  # type: ignore[attr-defined]
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deephash", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (config_type, _function, text) in commands().items():
        sub = subparsers.add_parser(name, help=text, description=text)
        sub.add_argument("--config", help="YAML config to start from (e.g. a run's config.yaml)")
        add_arguments(sub, config_type)
        sub.set_defaults(handler=_run)
    listing = subparsers.add_parser("list", help="list registered components")
    listing.add_argument("what", choices=("backbones", "protocols", "losses", "miners"))
    listing.set_defaults(handler=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
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
