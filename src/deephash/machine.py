"""What a result was measured on: the CPU model and its speed-relevant flags, the GPU, the
versions, how OpenMP's threads wait. Written into every run's ``run.json`` and every
benchmark's JSON, since this project's figures come from machines whose processor changes
between sessions. And how busy the machine was: the 1-minute load average against the
cores this process may use (:func:`load_sample`, :func:`load_summary`), sampled by the
training loop once per epoch, since a timing taken while other jobs wanted the cores is
only an upper bound."""

from __future__ import annotations

import math
import os
import platform
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deephash.omp import wait_policy

#: the mark of a time taken while the load exceeded the cores (explained by
#: :func:`load_footnote`)
LOADED = "†"

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
    """``{"cpu", "cpu_flags", "cores", "torch_threads", "omp_wait", "cuda", "python",
    "torch", "deephash"}``."""
    import torch

    import deephash

    cpu, flags = cpu_model()
    return {"cpu": cpu, "cpu_flags": " ".join(flags), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "omp_wait": wait_policy(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__,
            "deephash": deephash.__version__}


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; ``os.cpu_count()`` where
    there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def load_sample() -> float:
    """The machine's 1-minute load average now (``nan`` where the system has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover
        return math.nan


#: the share of its CPU time a run's threads may wait for a core before its timings count
#: as taken under load (a quiet machine: 0-3 %; beside one busy process per core: ~100 %)
WAITED = 0.10
#: ... and the seconds they must have waited in all: a run of a few hundredths of a second
#: (a test's) reads a large share from its own threads taking turns, which says nothing
MIN_WAIT_SECONDS = 1.0


def load_summary(samples: list[float], cores: int | None = None,
                 waits: list[float] | None = None,
                 cpus: list[float] | None = None) -> dict[str, Any] | None:
    """``{"cores", "load_mean", "load_max", "samples", "cpu_wait_fraction", "over_cores"}``
    of per-epoch load samples (``nan`` ones left out) and, where the kernel reports them,
    the epochs' run-queue waits and CPU seconds (``cpu_wait_fraction``: waited / CPU
    seconds); ``None`` without a sample.

    ``over_cores``: other jobs wanted the cores, so wall-clock times are upper bounds and
    CPU times may be somewhat inflated. Decided by the threads' waiting for a core (more
    than :data:`WAITED` of the CPU time, and :data:`MIN_WAIT_SECONDS` in all) where it was
    measured, else by the mean load
    average exceeding the usable cores. The load average alone misjudges the case that
    matters here: it counts the run's own threads (a run filling both of 2 cores reads
    about 2 alone, 2.3 at times) and trails the processes that ended in the last minute,
    so quiet runs of ``benchmarks/bench_timing_under_load.py`` read means of 1.8-2.3 on 2
    cores while the loaded ones read 4.0-4.4; their waits were a few percent against about
    100 %."""
    finite = [s for s in samples if isinstance(s, (int, float)) and math.isfinite(s)]
    if not finite:
        return None
    cores = cores or usable_cores()
    peak, mean = max(finite), math.fsum(finite) / len(finite)
    pairs = [(w, c) for w, c in zip(waits or [], cpus or [], strict=False)
             if math.isfinite(w) and math.isfinite(c)]
    cpu, waited = math.fsum(c for _w, c in pairs), math.fsum(w for w, _c in pairs)
    fraction = waited / cpu if pairs and cpu > 0 else None
    return {"cores": cores, "load_mean": round(mean, 2), "load_max": round(peak, 2),
            "samples": len(finite),
            "cpu_wait_fraction": None if fraction is None else round(fraction, 3),
            "over_cores": (fraction > WAITED and waited >= MIN_WAIT_SECONDS)
            if fraction is not None else mean > cores}


def combined_load(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One :func:`load_summary` of several (a study's sub-runs): means weighted by samples."""
    found = [s for s in summaries if isinstance(s, dict) and s.get("samples")]
    if not found:
        return None
    count = sum(int(s["samples"]) for s in found)
    cores = min(int(s["cores"]) for s in found)
    peak = max(float(s["load_max"]) for s in found)
    mean = math.fsum(float(s["load_mean"]) * int(s["samples"]) for s in found) / count
    fractions = [(float(s["cpu_wait_fraction"]), int(s["samples"])) for s in found
                 if s.get("cpu_wait_fraction") is not None]
    fraction = (round(math.fsum(f * n for f, n in fractions)
                      / sum(n for _f, n in fractions), 3) if fractions else None)
    return {"cores": cores, "load_mean": round(mean, 2), "load_max": round(peak, 2),
            "samples": count, "cpu_wait_fraction": fraction,
            "over_cores": any(bool(s["over_cores"]) for s in found)}


def under_load(load: dict[str, Any] | None) -> bool:
    """Whether a run's ``load`` (its ``run.json``'s, :func:`load_summary`) exceeded the
    cores while it trained."""
    return bool(isinstance(load, dict) and load.get("over_cores"))


def load_footnote(loads: Iterable[dict[str, Any] | None]) -> str:
    """The footnote under a table that explains :data:`LOADED`; ``""`` when no time
    carries it."""
    loaded = [load for load in loads if load is not None and under_load(load)]
    if not loaded:
        return ""
    peak = max(float(load["load_max"]) for load in loaded)
    cores = min(int(load["cores"]) for load in loaded)
    waits = [float(load["cpu_wait_fraction"]) for load in loaded
             if load.get("cpu_wait_fraction") is not None]
    waited = f"its threads waited for a core up to {max(waits):.0%} of their CPU time, " \
        if waits else ""
    return (f"\n{LOADED} trained while other jobs shared the machine's {cores} usable cores "
            f"({waited}1-minute load average up to {peak:.1f}): wall-clock times are upper "
            "bounds and CPU times may read somewhat high.\n")
