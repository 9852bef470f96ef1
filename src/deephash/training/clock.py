"""Training time that other processes barely move: CPU time beside the wall-clock.

:class:`Stopwatch` reads both clocks. The CPU clock (:func:`cpu_seconds`) is the user +
system time of every thread of this process (torch's intra-op threads, a prefetch thread)
plus that of its child processes once they have ended and been reaped: DataLoader workers
(``--num-workers``) end with each epoch's pass over the images, so an epoch counts its
decoding too. Under ``torchrun`` each rank is its own process and counts itself only; the
run's figures are rank 0's, and the other ranks do the same work on their share of each
batch.

Wall-clock time counts the waiting for the cores as well, so a run beside other jobs
reads slower by however many jobs there were; CPU time counts only what the process
computed. That holds only while idle threads sleep: OpenMP's default lets a thread that
waits at the end of a parallel loop spin for about 3 ms first, and with other processes
on the cores the thread it waits for is often descheduled for longer, so the spinning
doubled or tripled the CPU time and slowed the run itself (:mod:`deephash.omp`, which
deephash sets before torch loads, has the measurements).

The third clock, :func:`cpu_wait_seconds`, is how long this process's threads were ready
to run but waited for a core (Linux's per-thread run-queue delay,
``/proc/self/task/*/schedstat``): near zero on a quiet machine, about the CPU time itself
beside one busy process per core. It says directly whether other jobs took the cores,
which the load average (counting this process's own threads, and trailing by a minute)
cannot on a machine the run fills alone (:func:`deephash.machine.load_summary`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux or macOS
    resource = None  # type: ignore[assignment]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and its reaped children."""
    if resource is None:  # pragma: no cover
        return time.process_time()
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_wait_seconds() -> float:
    """Seconds the threads of this process have waited on a run queue for a core, summed
    over its live threads (``nan`` where the kernel does not report it). A thread that
    ends takes its share with it, so a difference of two readings is clamped at 0 by
    :class:`Stopwatch`."""
    total = 0
    try:
        for stat in Path("/proc/self/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # the thread ended while we read
    except OSError:  # pragma: no cover - not on Linux
        return math.nan
    return total / 1e9 if total or Path("/proc/self/schedstat").exists() else math.nan


@dataclass(frozen=True)
class Lap:
    """Seconds on the three clocks: wall-clock, CPU, and waiting for a core."""

    wall: float
    cpu: float
    wait: float = math.nan


class Stopwatch:
    """Started on creation; :meth:`read` gives the :class:`Lap` since then."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = cpu_seconds()
        self._wait = cpu_wait_seconds()

    def read(self) -> Lap:
        return Lap(time.perf_counter() - self._wall, cpu_seconds() - self._cpu,
                   max(0.0, cpu_wait_seconds() - self._wait))
