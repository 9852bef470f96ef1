"""The generated tables of the README and the docs pages (``deephash.reporting.readme``):
rendered from committed report summaries, every file up to date with them; and the README
as the front door (its two commands first, its links and every page's figures there)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deephash.errors import ConfigError
from deephash.reporting.readme import blocks, main, markdown_files, regenerate

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


def test_without_files_every_markdown_file_with_a_block_is_processed(
        folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """README.md and docs/**/*.md, each block's source relative to its own file."""
    (folder / "docs" / "deep").mkdir(parents=True)
    stale = "<!-- generated: {} table codes -->\n| bits | map@all |\n<!-- /generated -->\n"
    (folder / "README.md").write_text(stale.format("results/summary.json"))
    (folder / "docs" / "deep" / "page.md").write_text(stale.format("../../results/summary.json"))
    (folder / "docs" / "plain.md").write_text("no blocks\n")
    assert markdown_files(folder) == [folder / "README.md", folder / "docs" / "deep" / "page.md"]
    monkeypatch.chdir(folder)
    assert main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "README.md: table codes" in out and "page.md: table codes" in out
    assert main([]) == 0 and main(["--check"]) == 0
    assert "| 48 | 0.84 |" in (folder / "docs" / "deep" / "page.md").read_text()
    (folder / "README.md").write_text("none\n")
    (folder / "docs" / "deep" / "page.md").write_text("none\n")
    assert main(["--check"]) == 2
    assert "no Markdown file with a generated block" in capsys.readouterr().err


@pytest.mark.parametrize("path", markdown_files(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_generated_tables_are_what_the_committed_reports_give(path: Path) -> None:
    """Every generated table of the README and the docs equals its rendering from the
    committed source: a table typed or edited by hand fails here (regenerate: python -m
    deephash.reporting.readme)."""
    text = path.read_text()
    assert blocks(text)
    _, stale = regenerate(text, path.parent)
    assert stale == [], [f"{b.kind} {b.arguments} from {b.source}" for b in stale]


def test_the_tables_that_left_the_readme_are_still_generated() -> None:
    """The study's, the methods', the service's and the multi-label tables moved from the
    README into docs pages, and stay generated (and checked above) there."""
    files = {str(path.relative_to(ROOT)) for path in markdown_files(ROOT)}
    assert {"README.md", "docs/study.md", "docs/comparison.md", "docs/service.md",
            "docs/multilabel.md"} <= files
    sources = {block.source for path in markdown_files(ROOT)
               for block in blocks(path.read_text())}
    assert {"../results/study-full/summary.json", "../results/study-quick/study.json",
            "../results/issue12/summary.json", "../benchmarks/results/methods.json",
            "../benchmarks/results/served_ranking.json",
            "../benchmarks/results/multilabel.json"} <= sources


README = (ROOT / "README.md").read_text()


def test_the_readme_starts_with_the_two_commands() -> None:
    first = re.search(r"```bash\n(.*?)```", README, re.DOTALL)
    assert first and README.index("```bash") < README.index("\n## ")
    lines = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert lines == ["./run deephash study --preset quick --data-dir ../shared/data/cifar10 "
                     "--out runs/study-quick", "./run tests"]
    assert "./run tests" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_the_front_door() -> None:
    """What a newcomer needs in the first minute, and links to the rest (STYLE.md rule 10)."""
    assert len(README.encode()) < 12_000
    headings = re.findall(r"^## (.+)$", README, re.MULTILINE)
    assert "Install" in headings and "Documentation" in headings
    tables = [block for block in blocks(README) if block.body.lstrip().startswith("|")]
    assert len(tables) == 1  # one results table; the At scale goals are a short list
    assert all(block.source.startswith("benchmarks/results/") for block in blocks(README))


#: a Markdown link or image to a file of the repository: [text](path) or ![alt](path),
#: or an HTML <img src="path">
LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)\s]+)\)|<img src=\"(?!https?:)([^\"]+)\"")


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_figure_points_at_a_file(path: Path) -> None:
    """The README's links into docs/ and every page's figures exist (the site's strict build
    checks the docs pages too, with their anchors, where mkdocs is installed)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    targets = [a or b for a, b in LINK.findall(text)]
    generated = {"cli.md"}  # written by docs/hooks.py when the site is built
    missing = [target for target in targets
               if target.split("#")[0] and target.split("#")[0] not in generated
               and not (path.parent / target.split("#")[0]).exists()]
    assert not missing
    if path.name == "README.md":
        assert sum(target.startswith("docs/") for target in targets) >= 15


def test_every_figure_in_docs_is_shown_and_made_by_a_command() -> None:
    """Each image under docs/images is on a page, and that page names the command that
    makes it (a `./run` or `deephash` line), so every figure stays reproducible."""
    pages = {page: page.read_text() for page in (ROOT / "docs").glob("*.md")}
    for image in sorted((ROOT / "docs" / "images").iterdir()):
        showing = [text for text in pages.values() if f"images/{image.name}" in text]
        assert showing, f"{image.name} is on no page"
        assert any("./run " in text or "deephash " in text for text in showing), image.name
