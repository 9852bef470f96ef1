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


def _baseline(args: argparse.Namespace) -> int:
    from deephash.studies.baseline import run_baseline
    from deephash.studies.baseline_config import BaselineConfig

    config = load_yaml(BaselineConfig, Path(args.config)) if args.config else BaselineConfig()
    run_baseline(apply_arguments(config, args))
    return 0


def _train(args: argparse.Namespace) -> int:
    from deephash.studies.train import run_train
    from deephash.training.config import TrainConfig

    config = load_yaml(TrainConfig, Path(args.config)) if args.config else TrainConfig()
    run_train(apply_arguments(config, args))
    return 0


def _study(args: argparse.Namespace) -> int:
    """select-margin, miner-study and loss-study: build the config, call the study."""
    from deephash.studies.loss_study import LossStudyConfig, run_loss_study
    from deephash.studies.miner_study import MinerStudyConfig, run_miner_study
    from deephash.studies.select_margin import SelectMarginConfig, run_select_margin

    studies: dict[str, tuple[type, Callable[[Any], Any]]] = {
        "select-margin": (SelectMarginConfig, run_select_margin),
        "miner-study": (MinerStudyConfig, run_miner_study),
        "loss-study": (LossStudyConfig, run_loss_study)}
    cls, run = studies[args.command]
    config = load_yaml(cls, Path(args.config)) if args.config else cls()
    run(apply_arguments(config, args))
    return 0


def _list(args: argparse.Namespace) -> int:
    from deephash.backbones import BACKBONES
    from deephash.data import PROTOCOLS
    from deephash.losses import LOSSES
    from deephash.miners import MINERS

    registries = {"backbones": BACKBONES, "protocols": PROTOCOLS, "losses": LOSSES,
                  "miners": MINERS}
    names = registries[args.what].names()  # type: ignore[attr-defined]
    print("\n".join(names))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from deephash.studies.baseline_config import BaselineConfig
    from deephash.training.config import TrainConfig

    parser = argparse.ArgumentParser(prog="deephash", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    baseline = commands.add_parser(
        "baseline", help="measure frozen pretrained features on a protocol",
        description="Extract (cached) backbone features and write metrics, splits, "
                    "embeddings, a PR curve and a t-SNE map into a run folder.")
    baseline.add_argument("--config", help="YAML config to start from (e.g. a run's config.yaml)")
    add_arguments(baseline, BaselineConfig)
    baseline.set_defaults(handler=_baseline)

    train = commands.add_parser(
        "train", help="train an embedding head (or the whole network) with a triplet loss",
        description="Train with a loss and an online miner, keep the epoch with the best "
                    "validation mAP@all, and evaluate it on the test protocol.")
    train.add_argument("--config", help="YAML config to start from (e.g. a run's config.yaml)")
    add_arguments(train, TrainConfig)
    train.set_defaults(handler=_train)

    from deephash.studies.loss_study import LossStudyConfig
    from deephash.studies.miner_study import MinerStudyConfig
    from deephash.studies.select_margin import SelectMarginConfig

    for name, cls, text in (
            ("select-margin", SelectMarginConfig,
             "train each margin of a grid, choose on validation, test the winner once"),
            ("miner-study", MinerStudyConfig,
             "compare online miners at equal loss, margin, budget and seed"),
            ("loss-study", LossStudyConfig,
             "compare the baseline and each loss, each with its selected margin")):
        study = commands.add_parser(name, help=text, description=text)
        study.add_argument("--config", help="YAML config to start from")
        add_arguments(study, cls)
        study.set_defaults(handler=_study)

    listing = commands.add_parser("list", help="list registered components")
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
        print("deephash: interrupted; finished feature shards are kept and a rerun resumes",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
