"""The ``deephash`` command: each subcommand parses arguments and calls one library function.

Building the parser imports no torch: the configs are torch-free dataclasses, the names
come from :mod:`deephash.registries`, and a subcommand's library module is imported only
when it runs. Every option is checked (:func:`deephash.validation.validate`) before the
library function starts; a bad one is a single ``deephash: error:`` line and exit code 2.
A full disk or a folder the file system refuses to write is one such line too (exit code
1), naming the file (:func:`deephash.fileio.storage_error`), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deephash import __version__
from deephash.commands import COMMANDS
from deephash.config import add_arguments, apply_arguments, load_yaml
from deephash.errors import DeephashError
from deephash.registries import LISTABLE
from deephash.registry import Lazy


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


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, never breaking a line inside a hyphenated word: a default
    such as ``neg-half-inner`` or ``batch-all`` stays whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent,
                             subsequent_indent=indent, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage above its error message (``--help`` has the rest)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"usage: {self.prog} [-h] [options] (see {self.prog} --help)\n"
                     f"{self.prog}: error: {message}\n")


#: what ``deephash --help`` says above the commands (plain text: the module docstring is
#: for readers of the code)
DESCRIPTION = ("deephash: image embeddings and binary codes with triplet networks, and "
               "retrieval with them. Each command writes a run, index or report folder; "
               "'deephash COMMAND --help' lists its options and their defaults.")
EPILOG = ("Every option is checked before a command starts: a bad one is a single "
          "'deephash: error:' line (exit code 2), as is a full disk or a folder that cannot "
          "be written (exit code 1). Progress goes to stderr: a bar on a terminal, a line "
          "every DEEPHASH_PROGRESS_EVERY seconds (default 10) elsewhere; DEEPHASH_PROGRESS=0 "
          "silences it.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deephash", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"deephash {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="warnings and errors only (no progress, no notes)")
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


#: the commands that run as several processes under torchrun (deephash.distributed); index
#: and baseline share their feature extraction only (docs/scale-extraction.md)
DISTRIBUTED_COMMANDS = ("train", "hash", "index", "baseline")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank, world = (os.environ.get(name, default) for name, default in (("RANK", "0"),
                                                                        ("WORLD_SIZE", "1")))
    quiet = args.quiet or rank not in ("0", "")  # under torchrun, rank 0 alone reports
    logging.basicConfig(level=logging.WARNING if quiet else logging.DEBUG if args.verbose
                        else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    # -q silences the progress bars too (deephash.progress reads its logger's level)
    logging.getLogger("deephash.progress").setLevel(logging.WARNING if args.quiet
                                                    else logging.NOTSET)
    if world not in ("1", "") and args.command not in DISTRIBUTED_COMMANDS:
        print(f"deephash: error: {args.command} runs in one process; under torchrun (WORLD_SIZE "
              f"{world}) only {', '.join(DISTRIBUTED_COMMANDS)} do", file=sys.stderr)
        return 2
    try:
        return int(args.handler(args))
    except DeephashError as exc:
        print(f"deephash: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from deephash.fileio import storage_error

        line = storage_error(exc)
        if line is None:
            raise
        print(f"deephash: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("deephash: interrupted; finished feature shards and last.pt are kept, and a "
              "rerun (train: --resume) continues", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
