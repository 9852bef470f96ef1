"""The library installs beside a user's PyTorch; ``./run`` installs the tested versions."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    return [Requirement(text) for text in
            project["dependencies"] + project["optional-dependencies"]["dev"]]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_dependencies_are_bounded_ranges_not_pins() -> None:
    for requirement in _requirements():
        operators = {spec.operator for spec in requirement.specifier}
        assert "==" not in operators, requirement
        assert {">=", "<"} <= operators, f"{requirement} needs a lower and an upper bound"


def test_constraints_pin_every_direct_dependency_inside_its_range() -> None:
    pins = _constraints()
    for requirement in _requirements():
        version = pins[requirement.name.lower()]
        assert requirement.specifier.contains(version), (requirement, version)
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_the_environment_has_the_tested_versions() -> None:
    # as pip reads the pins: torch==2.14.1 is also 2.14.1+cpu, PyTorch's CPU build (./run)
    for name, version in _constraints().items():
        assert SpecifierSet(f"=={version}").contains(importlib.metadata.version(name)), name


def test_run_installs_with_the_constraints_and_reinstalls_when_they_change() -> None:
    script = (ROOT / "run").read_text()
    assert re.search(r'pip install .*-c "\$root/constraints.txt" -e "\$root\[dev\]"', script)
    stamp = next(line for line in script.splitlines() if line.startswith("want="))
    assert "pyproject.toml" in stamp and "constraints.txt" in stamp


def test_build_and_package_data() -> None:
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]
    assert PYPROJECT["project"]["license"] == "MIT"
    assert "Copyright (c) 2026 the deephash authors" in (ROOT / "LICENSE").read_text()
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["deephash"]
    # type hints; the study presets; the page of deephash serve
    assert data == ["py.typed", "studies/presets/*.yaml", "service/static/*"]
    for pattern in data:
        assert list((ROOT / "src" / "deephash").glob(pattern)), pattern
