"""tools/torch_wheels.py: which PyTorch wheels ``./run`` installs, decided without pip.

The GPU is faked (a folder for /proc/driver/nvidia/gpus, an ``nvidia-smi`` on PATH), the CPU
index is a local server or a closed port; tests/test_install_pip.py runs pip on the choice.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.install_fakes import (
    TORCH_WHEELS_SCRIPT,
    closed_port_url,
    load_torch_wheels,
    serve,
    torch_indexes,
)

tw = load_torch_wheels()


def _no_gpu() -> bool:
    return False


def _gpu() -> bool:
    return True


@pytest.mark.parametrize(("setting", "system", "gpu", "expected"), [
    ("auto", "Linux", _no_gpu, "cpu"),
    ("auto", "Linux", _gpu, "default"),
    ("auto", "Darwin", _no_gpu, "default"),  # PyPI's wheels are CPU builds there
    ("auto", "Windows", _no_gpu, "default"),
    ("cpu", "Linux", _gpu, "cpu"),  # the override wins over the detection
    ("default", "Linux", _no_gpu, "default"),
    ("cpu", "Darwin", _no_gpu, "cpu"),
])
def test_choice_follows_the_gpu_the_system_and_the_override(setting, system, gpu,
                                                             expected) -> None:
    assert tw.choose(setting, system, gpu) == expected


def test_overrides_and_other_systems_do_not_look_for_a_gpu() -> None:
    def looked() -> bool:
        raise AssertionError("detection ran")

    assert tw.choose("cpu", "Linux", looked) == "cpu"
    assert tw.choose("default", "Linux", looked) == "default"
    assert tw.choose("auto", "Darwin", looked) == "default"


@pytest.mark.parametrize("setting", ["gpu", "CPU", "", "cuda"])
def test_a_bad_setting_names_the_variable_and_the_choices(setting) -> None:
    with pytest.raises(tw.ChoiceError, match=r"^DEEPHASH_TORCH=.* is not one of auto, cpu, "
                                             r"default$"):
        tw.choose(setting, "Linux", _no_gpu)


def _fake_nvidia_smi(folder: Path, output: str, status: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit {status}\n")
    script.chmod(0o755)


def test_gpu_detection_reads_the_driver_folder_and_nvidia_smi(tmp_path, monkeypatch) -> None:
    gpus = tmp_path / "proc" / "gpus"
    monkeypatch.setattr(tw, "NVIDIA_GPUS", gpus)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no nvidia-smi at all
    assert not tw.has_cuda_gpu()
    gpus.mkdir(parents=True)
    assert not tw.has_cuda_gpu()  # the driver loaded, no GPU
    (gpus / "0000:17:00.0").mkdir()
    assert tw.has_cuda_gpu()


@pytest.mark.parametrize(("output", "status", "expected"), [
    ("GPU 0: NVIDIA H200 (UUID: GPU-0b6e)", 0, True),
    ("NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.", 9,
     False),
    ("No devices found.", 6, False),
])
def test_gpu_detection_by_nvidia_smi(tmp_path, monkeypatch, output, status, expected) -> None:
    monkeypatch.setattr(tw, "NVIDIA_GPUS", tmp_path / "absent")
    _fake_nvidia_smi(tmp_path / "bin", output, status)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert tw.has_cuda_gpu() is expected


def test_probe_finds_torch_on_a_served_index_and_not_elsewhere(tmp_path) -> None:
    torch_indexes(tmp_path)
    (tmp_path / "empty").mkdir()
    with serve(tmp_path) as url:
        assert tw.probe(f"{url}/cpu") is None
        assert tw.probe(f"{url}/cpu/") is None
        assert tw.probe(f"{url}/empty") == f"HTTP 404 for {url}/empty/torch/"
    assert "refused" in tw.probe(closed_port_url())
    assert "unknown url type" in tw.probe("download.pytorch.org/whl/cpu")


def test_probe_gives_up_on_a_silent_server_within_its_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        start = time.perf_counter()
        reason = tw.probe(f"http://127.0.0.1:{silent.getsockname()[1]}/cpu", timeout=0.5)
        elapsed = time.perf_counter() - start
    assert reason in ("no answer within 0.5 s", "timed out")  # whichever clock ends first
    assert 0.4 < elapsed < 2.0


def test_pip_options_for_each_choice_and_the_fallback(capsys) -> None:
    index = "http://mirror.example/whl/cpu"

    def reachable(url: str) -> str | None:
        assert url == index
        return None

    def unreachable(url: str) -> str | None:
        return "Name or service not known"

    def not_asked(url: str) -> str | None:
        raise AssertionError("probed for the default wheels")

    assert tw.pip_options("cpu", index, False, reachable) == (
        "cpu", ["--extra-index-url", index])
    assert tw.pip_options("default", index, False, not_asked) == ("default", [])
    assert capsys.readouterr().err == ""
    assert tw.pip_options("cpu", index, False, unreachable) == ("default", [])
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and note.startswith("run: PyTorch's CPU wheel index "
                                                     f"{index} cannot be reached (Name or")
    assert "installing PyPI's default torch wheels instead" in note
    with pytest.raises(tw.ChoiceError, match=r"^DEEPHASH_TORCH=cpu, but .* cannot be reached"):
        tw.pip_options("cpu", index, True, unreachable)


def _venv_with_torch(venv: Path, version: str) -> Path:
    info = venv / "lib" / "python3.11" / "site-packages" / f"torch-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    return venv


@pytest.mark.parametrize(("version", "expected"), [
    ("2.14.1+cpu", "cpu"), ("2.14.1", "default"), ("2.14.1+cu130", "default")])
def test_installed_build_reads_torch_local_version(tmp_path, version, expected) -> None:
    assert tw.installed_build(_venv_with_torch(tmp_path / "venv", version)) == expected
    assert tw.installed_build(tmp_path / "empty") is None


@pytest.mark.parametrize(("choice", "installed", "reachable", "removed"), [
    ("cpu", "2.14.1", True, True),  # a CPU machine with the CUDA build: swap
    ("default", "2.14.1+cpu", True, True),  # DEEPHASH_TORCH=default (or a GPU now): swap
    ("cpu", "2.14.1+cpu", True, False),
    ("default", "2.14.1", True, False),
    ("cpu", "2.14.1+cpu", False, False),  # the index is down: the CPU build stays
    ("cpu", "2.14.1", False, False),  # the index is down: no point removing CUDA torch
])
def test_prepare_removes_torch_only_for_the_other_build(tmp_path, monkeypatch, capsys, choice,
                                                        installed, reachable, removed) -> None:
    venv = _venv_with_torch(tmp_path / "venv", installed)
    calls: list[list[str]] = []
    monkeypatch.setattr(tw.subprocess, "run", lambda command, **_: calls.append(command))
    monkeypatch.setattr(tw, "probe", lambda index: None if reachable else "refused")
    options = tw.prepare(choice, venv, {})
    assert options == (["--extra-index-url", tw.CPU_INDEX] if choice == "cpu" and reachable
                       else [])
    assert calls == ([[str(venv / "bin" / "python"), "-m", "pip", "uninstall", "--quiet", "-y",
                       "torch", "torchvision"]] if removed else [])
    assert ("run: replacing the" in capsys.readouterr().err) is removed


def _script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith("DEEPHASH_TORCH")}
    return subprocess.run([sys.executable, str(TORCH_WHEELS_SCRIPT), *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_script_falls_back_at_once_when_the_index_is_unreachable(tmp_path) -> None:
    """This machine's case (PyPI only): the default wheels, one line, no waiting."""
    venv = _venv_with_torch(tmp_path / "venv", "2.14.1")
    start = time.perf_counter()
    fallback = _script("prepare", "cpu", str(venv), DEEPHASH_TORCH_INDEX=closed_port_url())
    assert time.perf_counter() - start < 10
    assert fallback.returncode == 0 and fallback.stdout == "\n"
    assert fallback.stderr.count("\n") == 1 and "cannot be reached" in fallback.stderr


def test_script_cli(tmp_path) -> None:
    assert _script("choose", DEEPHASH_TORCH="default").stdout == "default\n"
    assert _script("choose", DEEPHASH_TORCH="cpu").stdout == "cpu\n"
    torch_indexes(tmp_path)
    with serve(tmp_path) as url:
        found = _script("prepare", "cpu", str(tmp_path / "venv"),
                        DEEPHASH_TORCH_INDEX=f"{url}/cpu/")
    assert found.stdout == f"--extra-index-url {url}/cpu/\n" and found.stderr == ""
    assert _script("prepare", "default", str(tmp_path / "venv")).stdout == "\n"
    for bad, message in ((("choose",), "run: DEEPHASH_TORCH='gpu' is not one of"),
                         (("prepare", "auto", "venv"), "usage: "), ((), "usage: ")):
        failed = _script(*bad, DEEPHASH_TORCH="gpu")
        assert failed.returncode == 2 and failed.stdout == ""
        assert failed.stderr.startswith(message) and failed.stderr.count("\n") == 1
    forced = _script("prepare", "cpu", str(tmp_path / "venv"), DEEPHASH_TORCH="cpu",
                     DEEPHASH_TORCH_INDEX=closed_port_url())
    assert forced.returncode == 2 and forced.stderr.startswith("run: DEEPHASH_TORCH=cpu, but")


def test_docs_show_the_settings_the_index_and_the_fallback_line_as_they_are(capsys) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "install.md").read_text()
    tw.pip_options("cpu", tw.CPU_INDEX, False, lambda _: "[Errno -2] Name or service not known")
    assert "\n  " + capsys.readouterr().err in page  # the line, as docs/install.md quotes it
    assert "| `DEEPHASH_TORCH` | `auto` (default), `cpu`, `default` |" in page
    assert tw.SETTINGS == ("auto", "cpu", "default")
    assert "| `DEEPHASH_TORCH_INDEX` |" in page and f"`{tw.CPU_INDEX}`" in page
