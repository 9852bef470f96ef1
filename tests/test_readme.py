"""The README's generated tables (``deephash.reporting.readme``): rendered from committed
report summaries, and the README itself up to date with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deephash.errors import ConfigError
from deephash.reporting.readme import blocks, main, regenerate

ROOT = Path(__file__).resolve().parents[1]

SUMMARY = {
    "title": "t", "machines": [],
    "rows": [
        {"run": "baseline", "method": "frozen", "protocol": "cifar10", "val_map@all": 0.31,
         "map@all": 0.32, "map@1000": 0.5, "knn_acc@1": 0.7, "p@100": 0.6, "prec@r2": None,
         "train_seconds": None},
        {"run": "losses/facenet", "method": "facenet", "protocol": "cifar10",
         "val_map@all": 0.82, "map@all": 0.81, "map@1000": 0.8, "knn_acc@1": 0.79,
         "p@100": 0.79, "prec@r2": None, "train_seconds": 725.0},
        {"run": "codes/bits-48", "method": "48-bit", "protocol": "cifar10",
         "val_map@all": 0.85, "map@all": 0.84, "map@1000": 0.8, "knn_acc@1": 0.78,
         "p@100": 0.8, "prec@r2": 0.75, "train_seconds": 100.0}],
    "tables": {"codes": "| bits | map@all |\n|---|---|\n| 48 | 0.84 |\n"},
}
STUDY = {"title": "t", "seconds": 3000.0, "stages": [
    {"name": "baseline", "command": "baseline", "state": "ran", "seconds": 150.0},
    {"name": "codes", "command": "hash", "state": "reused", "seconds": 0.1}]}


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "results" / "study.json").write_text(json.dumps(STUDY))
    return tmp_path


def test_blocks_render_rows_tables_and_stages(folder: Path) -> None:
    text = ("intro\n<!-- generated: results/summary.json summary losses/* codes/* -->\nold\n"
            "<!-- /generated -->\nmiddle\n<!-- generated: results/summary.json table codes -->\n"
            "<!-- /generated -->\n<!-- generated: results/study.json stages -->\n"
            "<!-- /generated -->\nend\n")
    new, stale = regenerate(text, folder)
    assert len(stale) == 3 and new.startswith("intro\n") and new.endswith("end\n")
    lines = new.splitlines()
    summary = [line for line in lines if line.startswith("| ") and "cifar10" in line]
    # the baseline row filtered out; the best value of each column in bold, per protocol
    assert [line.split(" | ")[0] for line in summary] == ["| losses/facenet", "| codes/bits-48"]
    assert "| **0.8500** | **0.8400** |" in summary[1] and "12 min" in summary[0]
    assert "**100 s**" in summary[1] and "| — |" in summary[0]  # prec@r2 missing: a dash
    assert "| 48 | 0.84 |" in lines
    assert "| baseline | baseline | ran | 2.5 min |" in lines
    assert "| **all** | | | **50.0 min** |" in lines
    # regenerated text is a fixed point
    again, stale = regenerate(new, folder)
    assert again == new and stale == []


def test_check_reports_a_hand_edit_and_rewrite_mends_it(folder: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    readme = folder / "README.md"
    readme.write_text("<!-- generated: results/summary.json table codes -->\n"
                      "| bits | map@all |\n|---|---|\n| 48 | 0.99 |\n<!-- /generated -->\n")
    assert main(["--check", str(readme)]) == 1
    assert "table codes from results/summary.json is stale" in capsys.readouterr().out
    assert "0.99" in readme.read_text()  # --check changes nothing
    assert main([str(readme)]) == 0
    assert "| 48 | 0.84 |" in readme.read_text()
    assert main(["--check", str(readme)]) == 0


@pytest.mark.parametrize(("text", "message"), [
    ("<!-- generated: results/summary.json summary -->\nno end\n", "no '<!-- /generated -->'"),
    ("<!-- generated: results/summary.json -->\n<!-- /generated -->", "needs a source file"),
    ("<!-- generated: results/summary.json plot -->\n<!-- /generated -->", "is not one of"),
    ("<!-- generated: results/summary.json table nope -->\n<!-- /generated -->",
     "'table' needs one of codes"),
    ("<!-- generated: results/summary.json summary zzz* -->\n<!-- /generated -->",
     "no summary row matches zzz*"),
    ("<!-- generated: results/missing.json stages -->\n<!-- /generated -->",
     "No such file"),
])
def test_malformed_blocks_are_one_line_errors(folder: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        regenerate(text, folder)


def test_the_readme_tables_are_what_the_committed_reports_give() -> None:
    """Every generated table of the README equals its rendering from the committed source:
    a table typed or edited by hand fails here (regenerate: python -m
    deephash.reporting.readme README.md)."""
    text = (ROOT / "README.md").read_text()
    assert blocks(text), "the README has no generated table"
    _, stale = regenerate(text, ROOT)
    assert stale == [], [f"{b.kind} {b.arguments} from {b.source}" for b in stale]
