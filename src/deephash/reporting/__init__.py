"""Reports of finished runs: ``report.html`` (self-contained) and ``report.md``.

``write_report(paths, out)`` collects the run folders under ``paths``
(:mod:`deephash.reporting.runs`), ranks a fixed set of test queries with the frozen
features, the best trained embedding and the best codes (chosen on validation;
:mod:`deephash.reporting.gallery`), and writes both pages into ``out``, with
``summary.json``: the summary table's rows and the machine they ran on, which the README's
generated tables are rendered from (:mod:`deephash.reporting.readme`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from deephash.command_configs import ReportConfig
from deephash.errors import ConfigError
from deephash.fileio import save_bytes, save_json
from deephash.reporting.gallery import Ranked, can_rank, choose_queries, rank
from deephash.reporting.html import render
from deephash.reporting.markdown import render_markdown, summary_markdown
from deephash.reporting.runs import RunRecord, find_runs
from deephash.reporting.studies import study_figures, study_tables
from deephash.reporting.summary import best_of_kind, summary_rows

log = logging.getLogger(__name__)

GALLERY_KINDS = ("frozen", "trained", "codes")


def run_names(runs: list[RunRecord]) -> dict[Path, str]:
    """Short names: each run's path relative to the runs' common folder (as given: a
    symbolic link keeps its own name)."""
    paths = [Path(os.path.abspath(run.path)) for run in runs]
    common = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    return {run.path: (path.relative_to(common).as_posix() or path.name)
            for run, path in zip(runs, paths, strict=True)}


def table_name(folder: Path, roots: list[Path]) -> str:
    """A study table's key in ``summary.json``: its folder relative to the report's common
    root folder (``losses/facenet``); the root's own name for the root itself."""
    absolute = [Path(os.path.abspath(root)) for root in roots]
    common = Path(os.path.commonpath(absolute)) if len(absolute) > 1 else absolute[0]
    return Path(os.path.abspath(folder)).relative_to(common).as_posix().strip(".") \
        or common.name


def gallery(runs: list[RunRecord], n_queries: int = 6, k: int = 10, seed: int = 0
            ) -> list[Ranked]:
    """The gallery's rows: the best run of each kind that saved its test vectors."""
    chosen = [run for kind in GALLERY_KINDS
              if (run := best_of_kind([r for r in runs if can_rank(r)], kind)) is not None]
    queries = choose_queries(chosen, n_queries, seed)
    return [rank(run, queries, k) for run in chosen] if len(queries) else []


def write_report(paths: list[Path], out: Path, title: str = "deephash report",
                 n_queries: int = 6, k: int = 10, seed: int = 0) -> tuple[Path, Path]:
    """Write ``out/report.html``, ``out/report.md`` and ``out/summary.json``; returns the
    pages' paths."""
    runs = find_runs(paths)
    names = run_names(runs)
    tables = study_tables(paths)
    out.mkdir(parents=True, exist_ok=True)
    page = render(runs, gallery(runs, n_queries, k, seed), names, title, study_figures(paths),
                  tables)
    html_path, md_path = out / "report.html", out / "report.md"
    save_bytes(html_path, page.encode())
    save_bytes(md_path, render_markdown(runs, names, title, out, tables).encode())
    machines = {json.dumps(m, sort_keys=True) for run in runs if (m := run.info.get("machine"))}
    save_json(out / "summary.json", {"title": title,
                                     "machines": [json.loads(m) for m in sorted(machines)],
                                     "rows": summary_rows(runs, names),
                                     "tables": {table_name(t.folder, paths): t.markdown
                                                for t in tables}})
    log.info("wrote %s (%.1f MB) and %s: %d runs", html_path, len(page) / 1e6, md_path,
             len(runs))
    return html_path, md_path


def run_report(config: ReportConfig) -> tuple[Path, Path]:
    """``deephash report RUN_DIR...``."""
    from deephash.validation import validate

    validate(config)  # --out: never into a run folder
    if not config.runs:
        raise ConfigError("give one or more run folders: deephash report RUN_DIR ...")
    return write_report([Path(p) for p in config.runs], Path(config.out), config.title,
                        config.queries, config.k, config.seed)


__all__ = ["find_runs", "run_report", "summary_markdown", "write_report"]
