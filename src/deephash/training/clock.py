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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Lap:
    """Seconds on both clocks."""

    wall: float
    cpu: float


class Stopwatch:
    """Started on creation; :meth:`read` gives the :class:`Lap` since then."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = cpu_seconds()

    def read(self) -> Lap:
        return Lap(time.perf_counter() - self._wall, cpu_seconds() - self._cpu)
