"""The result tables of the README and the docs pages, generated from reports instead of
typed by hand.

A generated block in a Markdown file is an HTML comment naming its source, the rendered
table, and a closing comment::

    <!-- generated: results/study-full/summary.json summary losses/* -->
    | run | method | ... |
    <!-- /generated -->

The source is a committed file, its path relative to the Markdown file's folder
(``results/...`` in ``README.md``, ``../results/...`` in ``docs/study.md``):
a report's ``summary.json`` (written by ``deephash report`` and ``deephash study``) or a
study's ``study.json``. Kinds:

- ``summary [PATTERN...]``: the report's summary rows (all, or those whose run name matches
  one of the ``fnmatch`` patterns), rendered as ``report.md`` renders them;
- ``table NAME``: a study table of the report (``summary.json``'s ``tables``: ``losses``,
  ``losses/facenet``, ``codes``, ...);
- ``stages``: a study's stages with their command, state and wall-clock time (``study.json``),
  the time of a stage whose runs trained while the machine's load exceeded its cores marked
  ``†`` and explained under the table.

``python -m deephash.reporting.readme`` rewrites every block of every Markdown file that has
one — ``README.md`` and ``docs/**/*.md`` of the current folder (:func:`markdown_files`), or
the files named; ``--check`` only reports the blocks that differ (the test suite checks every
such file, so a table edited by hand, or a source changed without regenerating, fails the
tests).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deephash.errors import ConfigError
from deephash.fileio import save_bytes
from deephash.machine import LOADED, load_footnote, under_load
from deephash.reporting.summary import rows_markdown

BLOCK = re.compile(r"<!-- generated: (?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- /generated -->",
                   re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One generated block: its source file, kind and arguments, and its current text."""

    source: str
    kind: str
    arguments: tuple[str, ...]
    body: str


def _block(match: re.Match[str]) -> Block:
    words = match["spec"].split()
    if len(words) < 2:
        raise ConfigError(f"generated block '<!-- generated: {match['spec']} -->' needs a "
                          "source file and a kind (summary, table NAME, stages)")
    return Block(words[0], words[1], tuple(words[2:]), match["body"])


def blocks(text: str) -> list[Block]:
    """Every generated block of a Markdown text, in order."""
    found = [_block(match) for match in BLOCK.finditer(text)]
    if text.count("<!-- generated:") != len(found):
        raise ConfigError("a '<!-- generated: ... -->' block has no '<!-- /generated -->' "
                          "after it")
    return found


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"generated block source {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"generated block source {path} is not JSON") from None


def stages_markdown(study: dict[str, Any]) -> str:
    """A study's stages and times as a Markdown table, the total last; a stage that
    trained under load marked."""
    lines = ["| stage | command | state | wall-clock |", "|---|---|---|---|"]
    stages = study.get("stages", [])
    for stage in stages:
        mark = f" {LOADED}" if under_load(stage.get("load")) else ""
        lines.append(f"| {stage['name']} | {stage['command']} | {stage['state']} | "
                     f"{stage['seconds'] / 60:.1f} min{mark} |")
    lines.append(f"| **all** | | | **{study.get('seconds', 0) / 60:.1f} min** |")
    return "\n".join(lines) + "\n" + load_footnote(stage.get("load") for stage in stages)


def render_block(block: Block, folder: Path) -> str:
    """The text a block should hold, from its source (relative to ``folder``)."""
    data = _load(folder / block.source)
    if block.kind == "summary":
        rows = [row for row in data.get("rows", [])
                if not block.arguments
                or any(fnmatch.fnmatch(row["run"], pattern) for pattern in block.arguments)]
        if not rows:
            raise ConfigError(f"{block.source}: no summary row matches "
                              f"{' '.join(block.arguments)}")
        return rows_markdown(rows)
    if block.kind == "table":
        tables = data.get("tables", {})
        if len(block.arguments) != 1 or block.arguments[0] not in tables:
            raise ConfigError(f"{block.source}: 'table' needs one of {', '.join(tables)}")
        return str(tables[block.arguments[0]]).rstrip("\n") + "\n"
    if block.kind == "stages":
        return stages_markdown(data)
    raise ConfigError(f"generated block kind {block.kind!r} is not one of summary, table, "
                      "stages")


def regenerate(text: str, folder: Path) -> tuple[str, list[Block]]:
    """``text`` with every block rendered afresh, and the blocks that changed."""
    blocks(text)  # raises for malformed blocks
    stale: list[Block] = []

    def replace(match: re.Match[str]) -> str:
        block = _block(match)
        body = render_block(block, folder)
        if body != block.body:
            stale.append(block)
        return f"<!-- generated: {match['spec']} -->\n{body}<!-- /generated -->"

    return BLOCK.sub(replace, text), stale


def markdown_files(root: Path) -> list[Path]:
    """The Markdown files under ``root`` that hold a generated block: ``README.md`` and
    ``docs/**/*.md``, in that order."""
    candidates = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [path for path in candidates
            if path.is_file() and "<!-- generated:" in path.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deephash.reporting.readme",
                                     description="regenerate the tables of Markdown files "
                                                 "from the reports they name")
    parser.add_argument("files", nargs="*", type=Path,
                        help="Markdown files (default: README.md and docs/**/*.md of the "
                             "current folder that hold a generated block)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a block is not what its source gives")
    args = parser.parse_args(argv)
    files = args.files or markdown_files(Path.cwd())
    if not files:
        print("no Markdown file with a generated block in README.md or docs/", file=sys.stderr)
        return 2
    status = 0
    for path in files:
        try:
            text, stale = regenerate(path.read_text(), path.parent)
        except (OSError, ConfigError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        for block in stale:
            print(f"{path}: {block.kind} {' '.join(block.arguments)} from {block.source} "
                  f"{'is stale' if args.check else 'regenerated'}")
        if stale and args.check:
            status = 1
        elif stale:
            save_bytes(path, text.encode())
    return status


if __name__ == "__main__":
    sys.exit(main())
