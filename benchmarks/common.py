"""Helpers shared by the benchmarks: machine description, JSON results, peak memory."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deephash.machine import describe_machine

RESULTS = Path(__file__).parent / "results"
#: the shared CIFAR-10 image-folder tree the benchmarks read by default
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"


def machine() -> dict[str, Any]:
    return {**describe_machine(), "date": time.strftime("%Y-%m-%d")}


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def reset_peak_rss(pid: int | str = "self") -> None:
    """Reset a process's peak resident set size (Linux ``clear_refs``; this one's by
    default)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def rss_mb(field: str = "VmHWM", pid: int | str = "self") -> float:
    """Current (``VmRSS``) or peak since the last reset (``VmHWM``) resident memory of a
    process (this one by default), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")
