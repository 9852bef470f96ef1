"""The field's hashing methods side by side (issue 22, item 2): ``deephash study --preset
methods``, its tables written for the README.

Runs (or continues: finished stages are reused) the study into ``--out``, then stores in
``benchmarks/results/methods.json`` (``methods-quick.json`` with ``--preset
methods-quick``) the machine, the command, the study's stages and times, each
``method-study`` stage's ``methods.json`` (every method, code length and seed) and the
README's tables: ``tables.<stage>`` (:func:`deephash.reporting.methods.methods_readme_table`,
the published figures beside ours) and ``tables.stages``.

    ./run python benchmarks/bench_methods.py [--preset methods|methods-quick]
          [--data ../shared/data/cifar10] [--out runs/study-methods] [--cache-dir DIR]
          [--tables-only]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import DATA, write_result

from deephash.cli import main as deephash
from deephash.reporting.methods import methods_readme_table
from deephash.reporting.readme import stages_markdown


def study_tables(out: Path) -> dict[str, Any]:
    """The stages' record, each finished method-study stage's ``methods.json`` and the
    tables (a stage still running or stopped has none yet)."""
    study = json.loads((out / "study.json").read_text())
    stages: dict[str, Any] = {}
    tables = {"stages": stages_markdown(study)}
    for stage in study["stages"]:
        if stage["command"] != "method-study" or stage["state"] not in ("ran", "reused"):
            continue
        record = json.loads((out / stage["name"] / "methods.json").read_text())
        stages[stage["name"]] = record
        tables[stage["name"]] = methods_readme_table(record)
    return {"study": study, "method_studies": stages, "tables": tables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="methods", choices=("methods", "methods-quick"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None,
                        help="study folder (default runs/study-<preset>)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--tables-only", action="store_true",
                        help="run nothing: write the results of the study already in --out")
    args = parser.parse_args(argv)
    out = args.out or Path("runs") / f"study-{args.preset}"
    command = ["study", "--preset", args.preset, "--data-dir", str(args.data), "--out",
               str(out), *(["--cache-dir", args.cache_dir] if args.cache_dir else [])]
    status = 0 if args.tables_only else deephash(command)
    if status != 0:
        return status
    write_result(args.preset, {"command": "deephash " + " ".join(command),
                               **study_tables(out)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
