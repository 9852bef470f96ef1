"""pip on fake torch/torchvision wheels: ``./run``'s choice installs the ``+cpu`` builds, and
``pip install deephash`` keeps a user's matching pair.

Two local PEP 503 indexes stand in for PyPI and PyTorch's CPU index (tests/install_fakes.py);
pip runs with no configuration file and no cache, so nothing touches the network.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.install_fakes import (
    ROOT,
    TORCH_WHEELS_SCRIPT,
    add_to_index,
    closed_port_url,
    load_torch_wheels,
    pip_env,
    serve,
    torch_indexes,
)

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

#: torch and torchvision as deephash requires them (pyproject.toml's ranges)
TORCH_REQUIREMENTS = [text for text in
                      tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                      ["dependencies"] if Requirement(text).name in ("torch", "torchvision")]
VERSIONS = "import importlib.metadata as m; print(m.version('torch'), m.version('torchvision'))"

#: an in-tree build backend: the project's editable wheel is a fake wheel with deephash's
#: torch requirements, so that `pip install -e ROOT[dev]` needs no setuptools download
BACKEND = f"""from pathlib import Path
from install_fakes import make_wheel

def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return make_wheel(Path(wheel_directory), "deephash", "0.1.0", {TORCH_REQUIREMENTS!r},
                      extras=["dev"]).name

build_wheel = build_editable
"""


def _fake_repository(root: Path) -> Path:
    """``./run``, its script and constraints.txt, with a project of only torch and torchvision."""
    (root / "tools").mkdir(parents=True)
    for path in (ROOT / "run", TORCH_WHEELS_SCRIPT, ROOT / "constraints.txt"):
        shutil.copy(path, root / path.relative_to(ROOT))
    shutil.copy(ROOT / "tests" / "install_fakes.py", root)
    (root / "backend.py").write_text(BACKEND)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n')
    return root


@pytest.mark.slow
def test_run_installs_the_wheels_it_chooses_and_swaps_them_when_the_choice_changes(
        tmp_path) -> None:
    """The real ``./run`` (in a copy) on the two simulated indexes, one venv, five calls."""
    root = _fake_repository(tmp_path / "repo")
    torch_indexes(tmp_path / "index")
    stamp = tmp_path / "venv" / ".deephash-installed"
    steps = [("default", "cpu", "2.14.1 0.29.1", None),  # PyPI's build, no probe
             ("cpu", "cpu", "2.14.1+cpu 0.29.1+cpu", "replacing the default build"),
             ("default", "cpu", "2.14.1 0.29.1", "replacing the cpu build"),
             # no CUDA GPU, CPU index unreachable (this machine): one line, PyPI's build
             ("auto", "closed", "2.14.1 0.29.1", "cannot be reached"),
             ("auto", "closed", "2.14.1 0.29.1", "no install")]  # the choice is in the stamp
    has_gpu = load_torch_wheels().has_cuda_gpu()
    with serve(tmp_path / "index") as url:
        for setting, index, versions, note in steps:
            if setting == "auto" and has_gpu:
                continue  # auto means the default wheels here; the unit tests cover it
            env = pip_env(f"{url}/pypi/", DEEPHASH_VENV=str(tmp_path / "venv"),
                          PYTHON=sys.executable, DEEPHASH_TORCH=setting,
                          DEEPHASH_TORCH_INDEX=(f"{url}/cpu" if index == "cpu"
                                                else closed_port_url()))
            done = subprocess.run([str(root / "run"), "python", "-c", VERSIONS], env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            assert done.stdout == versions + "\n", (setting, done.stderr)
            choice = "cpu" if setting == "auto" else setting
            assert stamp.read_text().endswith(f" torch={choice}\n")
            if note == "no install":
                assert done.stderr == ""
            elif note is not None:
                assert sum(note in line for line in done.stderr.splitlines()) == 1, done.stderr
            if note == "cannot be reached":
                assert "installing PyPI's default torch wheels instead" in done.stderr


def _venv_holding(folder: Path, index: str, packages: list[str]) -> Path:
    """A fresh venv (no pip of its own) with ``packages`` installed from ``index``."""
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    _pip(python, index, "install", *packages)
    return python


def _pip(python: Path, index: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args],
                          env=pip_env(index), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _resolve(python: Path, index: str, tmp_path: Path) -> dict[str, str]:
    """What ``pip install deephash`` would install: {name: version} from its --report."""
    report = tmp_path / "report.json"
    _pip(python, index, "install", "--dry-run", "--quiet", "--report", str(report), "deephash")
    return {item["metadata"]["name"]: item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


def test_pip_install_keeps_a_users_matching_torch_and_torchvision(tmp_path) -> None:
    pypi, _ = torch_indexes(tmp_path / "index")
    add_to_index(pypi, "deephash", "0.1.0", TORCH_REQUIREMENTS)
    with serve(tmp_path / "index") as url:
        pair = _venv_holding(tmp_path / "pair", f"{url}/cpu/",
                             ["torch==2.13.0+cpu", "torchvision==0.28.0+cpu"])
        assert _resolve(pair, f"{url}/pypi/", tmp_path) == {"deephash": "0.1.0"}
        # the case: a CPU torch alone; the newest torchvision pins the newest torch
        alone = _venv_holding(tmp_path / "alone", f"{url}/cpu/", ["torch==2.13.0+cpu"])
        assert _resolve(alone, f"{url}/pypi/", tmp_path) == {
            "deephash": "0.1.0", "torch": "2.14.1", "torchvision": "0.29.1"}


def _torch_requirements_below(names: list[str]) -> list[tuple[str, Requirement]]:
    """(who, requirement) for every torch/torchvision requirement of ``names`` and of what
    they require, as installed here (extras and other platforms' markers left out)."""
    found, seen, todo = [], set(), list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen or name in ("torch", "torchvision"):
            continue
        seen.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(requirement.name) in ("torch", "torchvision"):
                found.append((name, requirement))
            todo.append(requirement.name)
    return found


def test_no_dependency_narrows_the_torch_ranges_below_a_users_pair() -> None:
    """deephash's own dependencies (not dev) accept the issue's CPU pair 2.13.0/0.28.0."""
    names = [Requirement(text).name for text in
             tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    found = _torch_requirements_below(names)
    assert {who for who, _ in found} >= {"timm"}  # timm needs both; the walk reaches it
    pair = {"torch": "2.13.0+cpu", "torchvision": "0.28.0+cpu"}
    for who, requirement in found:
        assert requirement.specifier.contains(pair[requirement.name]), (who, requirement)
    for text in TORCH_REQUIREMENTS:
        requirement = Requirement(text)
        assert requirement.specifier.contains(pair[requirement.name])
