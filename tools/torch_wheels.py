"""Which PyTorch wheels fit this machine: ``./run`` asks before it installs deephash.

    python3 tools/torch_wheels.py choose          # prints cpu or default
    python3 tools/torch_wheels.py prepare CHOICE VENV  # prints pip's options for CHOICE

``cpu``: PyTorch's own CPU wheel index (torch 2.14.1+cpu, torchvision 0.29.1+cpu; a venv of
about 1.5 GB), chosen on Linux without a CUDA GPU. ``default``: PyPI's wheels, CUDA builds on
Linux (about 6.5 GB with their nvidia-* packages and triton), CPU builds on macOS and
Windows. ``DEEPHASH_TORCH=auto|cpu|default`` overrides the detection (``auto``, the
default, detects); ``DEEPHASH_TORCH_INDEX`` replaces the CPU index's URL (a mirror).

``prepare`` checks that the CPU index answers (within a few seconds); when it does not, the
choice falls back to the default wheels with one line on stderr (an explicit
``DEEPHASH_TORCH=cpu`` fails instead). It also removes torch and torchvision from VENV when
they are the other build: pip keeps an installed ``2.14.1`` for ``torch==2.14.1``, whichever
build it is. This runs before deephash is installed: the standard library only.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 3.0
SETTINGS = ("auto", "cpu", "default")
SETTING_VAR, INDEX_VAR = "DEEPHASH_TORCH", "DEEPHASH_TORCH_INDEX"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees


class ChoiceError(ValueError):
    """A bad setting or an unreachable index the user asked for: one line for the user."""


def has_cuda_gpu() -> bool:
    """True when the NVIDIA driver sees a GPU (/proc/driver/nvidia/gpus, or ``nvidia-smi -L``)."""
    if NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir()):
        return True
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def choose(setting: str = "auto", system: str | None = None,
           gpu: Callable[[], bool] = has_cuda_gpu) -> str:
    """``cpu`` or ``default``: the wheels ``setting`` (one of SETTINGS) asks for on ``system``."""
    if setting not in SETTINGS:
        raise ChoiceError(f"{SETTING_VAR}={setting!r} is not one of {', '.join(SETTINGS)}")
    if setting != "auto":
        return setting
    if (system or platform.system()) != "Linux":
        return "default"  # PyPI's torch for macOS and Windows is a CPU build already
    return "default" if gpu() else "cpu"


def probe(index: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``index`` (a PEP 503 simple index) lists torch; else why not, in a few words.

    Bounded by ``timeout`` seconds in all, name resolution included (a thread, so that a
    resolver that hangs does not hold ``./run`` up).
    """
    url = index.rstrip("/") + "/torch/"
    outcome: list[str | None] = [f"no answer within {timeout:g} s"]

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                response.read(1)
            outcome[0] = None
        except urllib.error.HTTPError as error:
            outcome[0] = f"HTTP {error.code} for {url}"
        except urllib.error.URLError as error:
            outcome[0] = str(error.reason)
        except (OSError, ValueError) as error:
            outcome[0] = str(error)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0]


def installed_build(venv: Path) -> str | None:
    """``cpu`` or ``default``: the build of torch installed in ``venv``; None when none is."""
    for metadata in sorted(venv.glob("lib/python*/site-packages/torch-*.dist-info/METADATA")):
        for line in metadata.read_text(errors="replace").splitlines():
            if line.startswith("Version:"):
                local = line.split(":", 1)[1].strip().partition("+")[2]
                return "cpu" if local == "cpu" else "default"
    return None


def pip_options(choice: str, index: str, forced: bool,
                reach: Callable[[str], str | None] | None = None) -> tuple[str, list[str]]:
    """(the wheels to install, pip's options for them): the CPU index as an extra index.

    An extra index, so that everything else still comes from PyPI (or the user's pip
    configuration); pip takes ``2.14.1+cpu`` over PyPI's ``2.14.1`` for ``torch==2.14.1``, a
    local version sorting above its public one. An unreachable index means the default
    wheels and one line on stderr, or a ChoiceError when ``forced`` (DEEPHASH_TORCH=cpu).
    """
    if choice != "cpu":
        return "default", []
    reason = (reach or probe)(index)
    if reason is None:
        return "cpu", ["--extra-index-url", index]
    if forced:
        raise ChoiceError(f"{SETTING_VAR}=cpu, but PyTorch's CPU wheel index {index} cannot be "
                          f"reached ({reason}); unset {SETTING_VAR} to install the default "
                          f"wheels, or set {INDEX_VAR} to a mirror")
    print(f"run: PyTorch's CPU wheel index {index} cannot be reached ({reason}); installing "
          f"PyPI's default torch wheels instead (CUDA builds on Linux, about 6.5 GB)",
          file=sys.stderr)
    return "default", []


def prepare(choice: str, venv: Path, env: dict[str, str]) -> list[str]:
    """pip's options for ``choice``, after removing torch of the other build from ``venv``."""
    forced = env.get(SETTING_VAR, "auto") == "cpu"
    wheels, options = pip_options(choice, env.get(INDEX_VAR, CPU_INDEX), forced)
    installed = installed_build(venv)
    # Only for the build that will come: a fallback (CPU index down) removes nothing, neither
    # a CPU build already there (6.5 GB of CUDA wheels are no cure) nor a CUDA one.
    if installed is not None and installed != wheels and (wheels == "cpu" or choice == "default"):
        print(f"run: replacing the {installed} build of torch and torchvision in {venv} by the "
              f"{wheels} build", file=sys.stderr)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "--quiet", "-y",
                        "torch", "torchvision"], check=True, stdout=sys.stderr)
    return options


def main(argv: list[str]) -> int:
    """``choose`` or ``prepare CHOICE VENV``; a bad setting is one line on stderr, exit 2."""
    try:
        if argv[:1] == ["choose"] and len(argv) == 1:
            print(choose(os.environ.get(SETTING_VAR, "auto")))
        elif argv[:1] == ["prepare"] and len(argv) == 3 and argv[1] in SETTINGS[1:]:
            print(" ".join(prepare(argv[1], Path(argv[2]), dict(os.environ))))
        else:
            print("usage: torch_wheels.py choose | prepare cpu|default VENV", file=sys.stderr)
            return 2
    except ChoiceError as error:
        print(f"run: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
