"""The shards of a feature cache entry: which rows each holds, its file, its process.

An entry of ``N`` rows is computed in shards of ``shard_size`` consecutive rows (the last
one shorter): ``rows-000000-004096.npy``, ``rows-004096-008192.npy``, ... in the entry's
``shards/`` folder, each named by its row range, so a folder listing says what is done.
The grid depends on ``N`` and the shard size only, never on the number of processes: a
run resumed with another ``--nproc-per-node`` reuses every finished shard. Under torchrun
the W ranks take contiguous blocks of shards (:meth:`deephash.distributed.Ranks.block`):
rank ``r`` reads a contiguous part of the data set and writes a contiguous part of the
matrix.

``DEEPHASH_SHARD_SIZE`` sets the shard size (default :data:`DEFAULT_SHARD_SIZE`: 4096
images, about 21 MB of 1280-d float32 features, some seconds to minutes of work; an
interrupted run loses at most one shard per process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cached_property

from deephash.distributed import COLLECTIVE_TIMEOUT, Ranks
from deephash.errors import ConfigError

#: images per shard unless ``DEEPHASH_SHARD_SIZE`` says otherwise
DEFAULT_SHARD_SIZE = 4096

#: the environment variable that sets the shard size
SHARD_SIZE_VARIABLE = "DEEPHASH_SHARD_SIZE"


def shard_size_setting(environ: Mapping[str, str] | None = None) -> int:
    """``DEEPHASH_SHARD_SIZE`` (default :data:`DEFAULT_SHARD_SIZE`); raises ``ConfigError``
    for anything but a positive whole number."""
    given = (os.environ if environ is None else environ).get(SHARD_SIZE_VARIABLE, "").strip()
    if not given:
        return DEFAULT_SHARD_SIZE
    if not given.isdigit() or int(given) < 1:
        raise ConfigError(f"{SHARD_SIZE_VARIABLE}={given!r} is not a positive whole number of "
                          f"images; set it e.g. to {DEFAULT_SHARD_SIZE}, or unset it")
    return int(given)


@dataclass(frozen=True)
class ShardPlan:
    """The shards of ``n_rows`` rows in shards of ``shard_size``."""

    n_rows: int
    shard_size: int

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.n_rows < 0:
            raise ValueError(f"no shards of {self.shard_size} rows for {self.n_rows} rows")

    @cached_property
    def ranges(self) -> list[range]:
        """Each shard's rows, in order; together exactly ``range(n_rows)``."""
        return [range(start, min(start + self.shard_size, self.n_rows))
                for start in range(0, self.n_rows, self.shard_size)]

    def numbers(self, group: Ranks) -> range:
        """The shards ``group``'s rank computes: a contiguous block (empty for a rank
        beyond the number of shards)."""
        return group.block(len(self.ranges))

    @staticmethod
    def name(rows: range) -> str:
        """The file of the shard holding ``rows``: ``rows-<start>-<stop>.npy``."""
        return f"rows-{rows.start:06d}-{rows.stop:06d}.npy"


def await_others(plan: ShardPlan, mine: Collection[int], finished: Callable[[int], bool],
                 on_finished: Callable[[range], object], *, poll_s: float = 0.5,
                 timeout_s: float = COLLECTIVE_TIMEOUT.total_seconds()) -> None:
    """Wait (as rank 0 does, to report the whole pool's progress) until every shard not
    in ``mine`` is ``finished(number)``, telling ``on_finished(rows)`` of each shard as it
    appears. Raises ``TimeoutError`` after ``timeout_s`` seconds (the collectives' limit;
    torchrun stops the other ranks earlier when one of them fails)."""
    waiting = [number for number in range(len(plan.ranges)) if number not in mine]
    deadline = time.monotonic() + timeout_s
    while True:
        still = []
        for number in waiting:
            if finished(number):
                on_finished(plan.ranges[number])
            else:
                still.append(number)
        waiting = still
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(waiting)} feature shards of other processes did not "
                               f"appear within {timeout_s:.0f} s; check their logs")
        time.sleep(poll_s)
