"""OpenMP's idle threads sleep instead of spinning: ``OMP_WAIT_POLICY=PASSIVE``, set when
deephash is imported before torch (the ``deephash`` command, ``python -m deephash``,
``torchrun`` of either) and the user chose no policy.

torch runs its intra-op parallel loops (matrix products, distance matrices, the miners'
reductions) on OpenMP's threads. By default a thread that reaches the end of a loop before
the others spins for about 3 ms (GNU OpenMP's 300,000 spins) before it sleeps. Alone on
the cores that costs nothing, the other threads finish within microseconds; with other
processes on the cores, the thread it waits for is often off the core for a whole
scheduler slice, and the spinning both burns CPU time and takes the core from the thread
that would finish the loop. Measured on 2 cores (2 torch threads, a 1280-512-128 head and
a triplet loss on batches of 160, 60 steps; the machine already had other jobs, load
about 2 to 5):

============================  ==================  ==================
wait policy                   beside other jobs   plus 2 processes
                              wall / CPU s        spinning: wall / CPU
============================  ==================  ==================
OpenMP's default (spin 3 ms)  8.3 / 9.5           43.2 / 15.6
``GOMP_SPINCOUNT=10000``      6.1 / 5.2           8.8 / 4.1
``OMP_WAIT_POLICY=PASSIVE``   3.3 / 3.2           5.8 / 3.1
one thread                    4.7 / 3.3           13.6 / 3.5
============================  ==================  ==================

With the passive policy the CPU time stays that of one thread doing all the work (3.1 to
3.3 s) with or without the extra load, and two threads still beat one on the wall-clock;
spinning made the same steps 5 times as costly in CPU time and 7 times as slow under load,
which is the issue's 40x slower semi-hard epoch. In the dry run of the benchmark below
(the miner study on tiny images, beside other jobs at a load of 9 to 11 on 2 cores)
OpenMP's default made the miners' training 24 to 67 times as slow on the wall-clock. The
policy changes how threads wait, never what they compute or how work is split, so every
result is the same to the bit. What it costs on an idle machine (a futex wake-up per
parallel loop, microseconds) ``benchmarks/bench_timing_under_load.py`` measures on a quiet
machine against OpenMP's default (``GOMP_SPINCOUNT=300000``).

The policy must be in the environment before torch loads its OpenMP runtime, which reads
it once; so it is set on importing :mod:`deephash`, and left alone when the user set
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (``GOMP_SPINCOUNT=300000`` restores OpenMP's
default) or when torch was loaded first (a notebook that imports torch before deephash
keeps its policy; :func:`wait_policy` says which one is in effect, ``run.json`` records it).
Child processes (DataLoader workers, ``torchrun``'s ranks) inherit it.
"""

from __future__ import annotations

import os
import sys

#: the environment variables that choose how OpenMP's idle threads wait
CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

#: whether importing deephash set ``OMP_WAIT_POLICY`` (filled in by :func:`prefer_passive`)
set_by_deephash = False


def prefer_passive() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy or torch is already
    loaded; returns whether it was set."""
    global set_by_deephash
    if "torch" in sys.modules or any(name in os.environ for name in CHOICES):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    set_by_deephash = True
    return True


def wait_policy() -> str:
    """How OpenMP's idle threads wait, in words: ``"passive (set by deephash)"``,
    ``"passive"``, ``"spin count 300000"``, ``"OpenMP's default"``."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().lower()
    spins = os.environ.get("GOMP_SPINCOUNT", "").strip()
    words = [w for w in (policy, f"spin count {spins}" if spins else "") if w]
    text = ", ".join(words) or "OpenMP's default"
    return f"{text} (set by deephash)" if set_by_deephash else text
