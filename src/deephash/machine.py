"""What a result was measured on: the CPU model and its speed-relevant flags, the GPU, the
versions. Written into every run's ``run.json`` and every benchmark's JSON, since this
project's figures come from machines whose processor changes between sessions."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any

#: the CPU flags that decide how fast a runtime can be (vector and matrix units)
SPEED_FLAGS = re.compile(r"(avx\w*|fma|f16c|amx\w*|sse4_2)")


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name and its speed flags (``("unknown", [])`` off Linux)."""
    cpu, flags = "unknown", list[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = sorted(f for f in line.split(":", 1)[1].split()
                               if SPEED_FLAGS.fullmatch(f))
    except OSError:
        pass
    return cpu, flags


def describe_machine() -> dict[str, Any]:
    """``{"cpu", "cpu_flags", "cores", "torch_threads", "cuda", "python", "torch",
    "deephash"}``."""
    import torch

    import deephash

    cpu, flags = cpu_model()
    return {"cpu": cpu, "cpu_flags": " ".join(flags), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__,
            "deephash": deephash.__version__}
