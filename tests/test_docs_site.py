"""The documentation site (mkdocs.yml, docs/): the CLI reference written from the parser,
and the whole site built with warnings as errors, as CI builds it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import deephash
from deephash.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deephash_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _option_strings(parser: object) -> list[str]:
    return [name for action in parser._actions for name in action.option_strings  # type: ignore[attr-defined]
            if name not in ("-h", "--help")]


def test_the_cli_reference_has_every_command_and_option_of_the_parser() -> None:
    hooks = _hooks()
    page = hooks.cli_markdown()
    commands = hooks.subcommands(build_parser())
    assert list(commands) == [line[3:] for line in page.splitlines() if line.startswith("## ")]
    assert {"hash", "index", "search", "serve", "study", "list"} <= set(commands)
    for name, (sub, _) in commands.items():
        section = page.split(f"\n## {name}\n")[1].split("\n## ")[0]
        assert f"deephash {name} [-h]" in section
        for option in _option_strings(sub):
            assert f"`{option}`" in section, (name, option)
    # help texts are expanded as --help prints them: argparse's %% escape is gone
    assert "%%" not in page and "holdout (a stratified 10 % as queries)" in page
    hash_section = page.split("\n## hash\n")[1].split("\n## ")[0]
    row = next(line for line in hash_section.splitlines() if line.startswith("| `--bits`"))
    assert "(default: " in row


def test_sphinx_roles_are_shown_as_code() -> None:
    html = ("see :func:<code>deephash.load</code>, :class:<code>~a.b.Miner</code> and "
            ":py:mod:<code>x</code>, not: a:b <code>:func:</code>")
    assert _hooks().on_post_page(html, None, None) == (
        "see <code>deephash.load</code>, <code>Miner</code> and <code>x</code>, not: a:b "
        "<code>:func:</code>")


def _missing_tools() -> str | None:
    """The first docs tool (mkdocs, its Material theme, mkdocstrings and its Python
    handler) that is not installed, or None."""
    for package, module in (("mkdocs", "mkdocs"), ("mkdocs-material", "material"),
                            ("mkdocstrings", "mkdocstrings"),
                            ("mkdocstrings-python", "mkdocstrings_handlers")):
        if importlib.util.find_spec(module) is None:
            return package
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing_tools()
    if missing:
        pytest.skip(f"the docs site is not built: {missing} is not installed "
                    "(pip install '.[docs]'; ./run installs it with the dev extra)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    return out


def test_the_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ("index", "install", "quickstart", "api", "cli", "reference", "study", "cite",
                 "findings", "methods"):
        assert (site / f"{page}.html").is_file(), page
    # every Markdown page of docs/ is a page of the site (mkdocs.yml's nav lists them all)
    for markdown in (ROOT / "docs").glob("*.md"):
        assert (site / f"{markdown.stem}.html").is_file(), markdown.name
    study = (site / "study.html").read_text()
    assert "57.7 min" in study and "<table>" in study  # a generated table, rendered
    # figures: every <img> of every page is a file of the site
    for page in site.glob("*.html"):
        for source in re.findall(r'<img[^>]* src="(?!https?:|data:)([^"]+)"', page.read_text()):
            assert (site / source).is_file(), (page.name, source)


def test_the_built_cli_reference_lists_every_subcommand(site: Path) -> None:
    html = (site / "cli.html").read_text()
    commands = _hooks().subcommands(build_parser())
    for name in commands:
        assert re.search(rf'<h2 id="{re.escape(name)}"', html), name
    assert "--trainable-blocks" in html and "--max-upload-bytes" in html


def test_the_api_reference_documents_every_public_name(site: Path) -> None:
    html = (site / "reference.html").read_text()
    for name in deephash.__all__:
        if name != "__version__":
            assert f'id="deephash.{name}"' in html, name
    assert ":func:" not in html and ":class:" not in html
