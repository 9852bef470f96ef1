"""Helpers shared by the benchmarks: machine description, JSON results, peak memory."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch

import deephash

RESULTS = Path(__file__).parent / "results"


#: the CPU flags that decide how fast a runtime can be (vector and matrix units)
SPEED_FLAGS = re.compile(r"(avx\w*|fma|f16c|amx\w*|sse4_2)")


def machine() -> dict[str, Any]:
    cpu, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = sorted(f for f in line.split(":", 1)[1].split()
                               if SPEED_FLAGS.fullmatch(f))
    except OSError:
        pass
    return {"cpu": cpu, "cpu_flags": " ".join(flags), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__,
            "deephash": deephash.__version__, "date": time.strftime("%Y-%m-%d")}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def reset_peak_rss() -> None:
    """Reset this process's peak resident set size (Linux ``clear_refs``)."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_mb(field: str = "VmHWM") -> float:
    """Current (``VmRSS``) or peak since the last reset (``VmHWM``) resident memory, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")
