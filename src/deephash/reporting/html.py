"""``report.html``: one self-contained page (plots and thumbnails embedded as ``data:``
URIs, inline CSS, no script, no network), to open offline or send by mail."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from deephash.metrics.names import metric_name, metric_order
from deephash.reporting.gallery import Ranked, image_uri, open_images, png_uri, thumbnail
from deephash.reporting.runs import RunRecord
from deephash.reporting.studies import StudyFigure, StudyTable, parse_markdown_table
from deephash.reporting.summary import COLUMNS, best_rows, cell, footnote, header, summary_rows

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child, .text { text-align: left; }
td.best { font-weight: bold; }
figure { display: inline-block; margin: 0.4em 1em 0.4em 0; }
figure img { max-width: 520px; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.gallery td { padding: 2px; border: none; vertical-align: top; }
.gallery img { display: block; width: 64px; height: 64px; image-rendering: pixelated;
               border: 3px solid #3a3; }
.gallery img.wrong { border-color: #d22; } .gallery img.query { border-color: #333; }
.gallery .label { font-size: 0.7em; color: #555; text-align: center; max-width: 70px;
                  overflow: hidden; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _anchor(run: RunRecord, runs: list[RunRecord]) -> str:
    return f"run-{runs.index(run) + 1}"


def summary_table(runs: list[RunRecord], names: dict[Path, str]) -> str:
    summary = summary_rows(runs, names)
    best = {column.key: best_rows(summary, column) for column in COLUMNS}
    head = "".join(f"<th>{_e(header(summary, c))}</th>" for c in COLUMNS)
    rows = []
    for i, run in enumerate(runs):
        cells = "".join(
            f"<td class=\"{'best' if i in best[c.key] else ''}\">"
            f"{_e(cell(summary, i, c))}</td>" for c in COLUMNS)
        rows.append(f"<tr><td><a href=\"#{_anchor(run, runs)}\">{_e(names[run.path])}</a></td>"
                    f"<td class=\"text\">{_e(run.title)}</td><td class=\"text\">"
                    f"{_e(run.protocol)}</td>{cells}</tr>")
    return (f"<table class=\"summary\"><tr><th>run</th><th class=\"text\">method</th>"
            f"<th class=\"text\">protocol</th>{head}"
            f"</tr>{''.join(rows)}</table>{_note(footnote(summary))}")


def _note(text: str) -> str:
    """Lines of text under a table (a footnote), as notes; ``""`` for none."""
    return "".join(f"<p class=\"note\">{_e(line)}</p>" for line in text.splitlines()
                   if line.strip())


def gallery_section(ranked: list[Ranked], names: dict[Path, str]) -> str:
    if not ranked:
        return "<p class=\"note\">No run saved test vectors to rank.</p>"
    dataset = open_images(ranked[0].run)
    classes = dataset.classes if dataset is not None else None

    def cell(index: int, labels: list[int], css: str) -> str:
        name = ", ".join(classes[c] if classes and c < len(classes) else str(c)
                         for c in labels) or "unlabelled"
        picture = (f"<img class=\"{css}\" src=\"{thumbnail(dataset, index)}\" "
                   f"alt=\"{_e(name)} (pool {index})\">" if dataset is not None
                   else f"<div class=\"{css}\">{index}</div>")
        return f"<td>{picture}<div class=\"label\">{_e(name)}</div></td>"

    parts = []
    for q in range(len(ranked[0].query)):
        query_index = int(ranked[0].query[q])
        query_labels = ranked[0].query_labels[np.array([q])].lists()[0]
        parts.append(f"<tr><td colspan=\"12\"><b>query {q + 1}</b> (pool index {query_index})"
                     "</td></tr>")
        for answer in ranked:
            results = "".join(cell(int(i), labels, "" if relevant else "wrong")
                              for i, labels, relevant in zip(answer.results[q],
                                                             answer.labels_of(q),
                                                             answer.relevant[q], strict=True))
            parts.append(f"<tr>{cell(query_index, query_labels, 'query')}{results}"
                         f"<td class=\"text\">{_e(answer.run.title)}<br>"
                         f"<span class=\"note\">{_e(names[answer.run.path])}</span></td></tr>")
    multi = not all(a.query_labels.is_single and a.result_labels.is_single for a in ranked)
    frames = ("green: shares a label with the query, red: shares none" if multi
              else "green: same class, red: wrong")
    return ("<p class=\"note\">The same test queries (dark frame) and each run's top "
            f"{ranked[0].results.shape[1]} ({frames}).</p>"
            f"<table class=\"gallery\">{''.join(parts)}</table>")


def _metrics_table(run: RunRecord) -> str:
    """The run's figures in reading order under readable names (mAP@all, mAP@1000, P@k,
    kNN@k, prec@r2, ...: :mod:`deephash.metrics.names`), each name's tooltip its key in
    ``metrics.json``; lists (a code's bit balance) and NaN are left out."""
    shown = {key: v for key, v in run.metrics.items()
             if isinstance(v, (int, float, str)) and not (isinstance(v, float) and math.isnan(v))}
    rows = "".join(
        f"<tr><td title=\"{_e(key)}\">{_e(metric_name(key))}</td>"
        f"<td>{_e(f'{shown[key]:.4f}' if isinstance(shown[key], float) else shown[key])}</td></tr>"
        for key in metric_order(shown))
    return f"<table class=\"metrics\">{rows}</table>"


def run_section(run: RunRecord, runs: list[RunRecord], names: dict[Path, str]) -> str:
    plots = "".join(f"<figure><img src=\"{image_uri(path)}\" alt=\"{_e(caption)}\">"
                    f"<figcaption>{_e(caption)}</figcaption></figure>"
                    for path, caption in run.plots())
    info = run.info
    facts = {"folder": str(run.path), "command": " ".join(map(str, info.get("command", []))),
             "started": info.get("started"), "state": info.get("state"),
             "device": info.get("device"), "seconds": info.get("seconds"),
             "cpu_seconds": info.get("cpu_seconds"), "load": info.get("load"),
             "machine": info.get("machine"), "git commit": info.get("git_commit")}
    facts_text = yaml.safe_dump({k: v for k, v in facts.items() if v}, sort_keys=False)
    return (f"<section id=\"{_anchor(run, runs)}\"><h2>{_e(names[run.path])}: "
            f"{_e(run.title)}</h2>{_metrics_table(run)}{plots}"
            f"<details><summary>configuration</summary><pre>"
            f"{_e(yaml.safe_dump(run.config, sort_keys=False))}</pre></details>"
            f"<details><summary>run: command, machine, timings</summary><pre>{_e(facts_text)}"
            "</pre></details></section>")


def table_html(table: StudyTable) -> str:
    header, rows = parse_markdown_table(table.markdown)
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    notes = "\n".join(line for line in table.markdown.splitlines()
                      if not line.strip().startswith("|"))
    return (f"<h3>{_e(table.caption)}</h3><table class=\"study\"><tr>{head}</tr>{body}"
            f"</table>{_note(notes)}")


def studies_section(figures: list[StudyFigure], tables: list[StudyTable]) -> str:
    if not figures and not tables:
        return ""
    parts = "".join(map(table_html, tables)) + "".join(
        f"<figure><img src=\"{png_uri(f.png)}\" "
        f"alt=\"{_e(f.caption)}\"><figcaption>{_e(f.caption)}</figcaption></figure>"
        for f in figures)
    return f"<section id=\"studies\"><h2>Studies</h2>{parts}</section>"


def render(runs: list[RunRecord], ranked: list[Ranked], names: dict[Path, str],
           title: str, figures: list[StudyFigure] | None = None,
           tables: list[StudyTable] | None = None) -> str:
    """The whole page."""
    protocols = sorted({run.protocol for run in runs})
    sections = "".join(run_section(run, runs, names) for run in runs)
    generated = time.strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p class=\"note\">Generated {_e(generated)} by deephash from "
        f"{len(runs)} run folder(s); protocol(s): {_e(', '.join(protocols))}. Every figure "
        "is read from the run folders' own files; the best value of each column is bold "
        "(selection of the gallery's runs: best validation mAP@all, never test).</p>"
        f"<section id=\"summary\"><h2>Summary</h2>{summary_table(runs, names)}</section>"
        f"<section id=\"gallery\"><h2>Retrieval gallery</h2>{gallery_section(ranked, names)}"
        f"</section>{studies_section(figures or [], tables or [])}{sections}</body></html>")
