"""The package's layering, read from the source (every import, those inside functions and
under ``TYPE_CHECKING`` included): lower layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deephash

SOURCE = Path(deephash.__file__).parent

#: the layers that run the commands: they may import everything below, nothing imports them
#: from below
COMMAND_LAYERS = ("deephash.studies", "deephash.reporting", "deephash.service",
                  "deephash.commands", "deephash.cli")
#: the layers below the commands (a package, or a module of the top level)
LOWER_LAYERS = ("data", "metrics", "labels", "losses", "miners", "hashing", "distances", "index",
                "features", "backbones", "runtimes", "viz", "training", "folders",
                "command_configs", "validation")


def imported_modules(path: Path) -> set[str]:
    """Every ``deephash`` module the file at ``path`` imports, wherever the import stands
    (``from deephash.x import y`` counts as ``deephash.x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "deephash" or name.startswith("deephash.")}


def layer_files(layer: str) -> list[Path]:
    package = SOURCE / layer
    return sorted(package.rglob("*.py")) if package.is_dir() else [SOURCE / f"{layer}.py"]


def within(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def test_imported_modules_reads_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text("from typing import TYPE_CHECKING\nimport deephash.labels\n"
                      "from deephash.errors import ConfigError\nfrom . import sibling\n"
                      "if TYPE_CHECKING:\n    from deephash.studies.configs import HashConfig\n"
                      "def f():\n    from deephash.studies.train import run_train\n")
    assert imported_modules(source) == {"deephash.labels", "deephash.errors",
                                        "deephash.studies.configs", "deephash.studies.train"}


def test_validation_imports_nothing_of_the_studies() -> None:
    """The studies call ``validate``; what validation needs lives below both (the commands'
    configurations in ``command_configs``, the folder rules in ``folders``, ``miners_for``
    in ``losses``, ``parse_variant`` in ``training.schedules``)."""
    assert not {m for m in imported_modules(SOURCE / "validation.py")
                if within(m, ("deephash.studies",))}


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_import_no_command_layer(layer: str) -> None:
    """No lower layer imports the studies, reporting, the service or the command line; of
    :mod:`deephash.pipeline` (the steps the commands share) only its torch-free
    configuration, which every configuration extends, and validation (which checks the
    training options with ``pipeline.setup.parse_weights``) anything."""
    allowed_pipeline = ("deephash.pipeline",) if layer == "validation" else (
        "deephash.pipeline.config",)
    offending = {
        f"{path.relative_to(SOURCE)}: {module}"
        for path in layer_files(layer) for module in imported_modules(path)
        if within(module, COMMAND_LAYERS)
        or (within(module, ("deephash.pipeline",)) and not within(module, allowed_pipeline))}
    assert not offending
