"""The command line itself: --help in plain text with each command's real defaults,
--version, -q, and no third-party loader chatter."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import deephash
from deephash.cli import build_parser, main
from deephash.commands import COMMANDS
from deephash.config import _leaves

ROOT = Path(__file__).resolve().parents[1]


def help_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def option_help(text: str) -> dict[str, str]:
    """flag -> its entry in argparse's --help output, whitespace collapsed."""
    return {block.split()[0].rstrip(","): " ".join(block.split())
            for block in re.split(r"\n  (?=-)", text)[1:]}


@pytest.mark.parametrize(("command", "expected"), [
    ("hash", {"--loss": "dtsh", "--miner": "batch-all", "--margin": "8.0",
              "--train-distance": "neg-half-inner", "--activation": "tanh",
              "--regularizers": "quantization=0.1 balance=0.1", "--loss-options": "none"}),
    ("method-study", {"--loss": "dtsh", "--miner": "batch-all", "--margin": "8.0"}),
    ("schedule-study", {"--loss": "dtsh", "--margin": "16.0"}),
    ("train", {"--loss": "facenet", "--miner": "semi-hard", "--margin": "0.2"}),
])
def test_help_shows_the_defaults_the_command_runs_with(
        command: str, expected: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """hash trains DTSH (its likelihood, batch-all, margin 8): its --help says so, not the
    facenet, semi-hard, 0.2 of train's configuration that it nests."""
    options = option_help(help_text([command], capsys))
    for flag, value in expected.items():
        assert options[flag].endswith(f"(default: {value})"), options[flag]


def value_at(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def test_every_flag_of_every_command_shows_its_commands_default() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in COMMANDS.items():
        config = command.config()
        actions = {action.dest: action for action in commands[name]._actions}
        for path, _tp, _field in _leaves(command.config):
            value = value_at(config, path)
            shown = (" ".join(map(str, value)) or "none") if isinstance(value, tuple) else value
            assert re.search(rf"\(default: {re.escape(str(shown))}[;)]",
                             actions["__".join(path)].help), (name, path)


def test_top_level_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text([], capsys)
    assert not re.search(r"``|:(mod|func|class|data|meth):", text)
    assert all(name in text for name in COMMANDS)
    assert "--version" in text and "-q, --quiet" in text


def test_version_is_the_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and capsys.readouterr().out == f"deephash {version.group(1)}\n"
    assert deephash.__version__ == version.group(1)


LOGS = ("import logging, sys\nfrom deephash.cli import main\nmain(sys.argv[1:])\n"
        "log = logging.getLogger('deephash.x')\nlog.info('a note')\nlog.warning('a warning')\n")


@pytest.mark.parametrize(("flags", "shown"), [(["-q"], ["a warning"]),
                                              ([], ["a note", "a warning"]),
                                              (["--quiet"], ["a warning"])])
def test_quiet_leaves_warnings_and_errors(flags: list[str], shown: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", LOGS, *flags, "list", "miners"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert [line.split(" ", 1)[1] for line in done.stderr.splitlines()] == shown
    assert "batch-hard" in done.stdout.split()


def test_faiss_loads_without_its_loader_lines() -> None:
    """faiss's loader logs at INFO which library it loads (and why an AVX-512 one could
    not be): not under deephash's INFO logging; its warnings still show."""
    code = ("import logging\nlogging.basicConfig(level=logging.INFO)\n"
            "from deephash.index.faiss_library import faiss\n"
            "assert faiss.IndexBinaryFlat(8).d == 8\n"
            "logging.getLogger('faiss.loader').warning('kept')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stderr.splitlines() == ["WARNING:faiss.loader:kept"]
