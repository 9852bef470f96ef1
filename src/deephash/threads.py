"""How many CPU threads a process computes with, when several share a machine.

``torchrun --nproc-per-node N`` starts N processes on each machine. Each one of them,
left alone, would run torch's intra-op loops on every core (N x cores threads fighting
for the cores), and torchrun itself answers that by setting ``OMP_NUM_THREADS=1`` (one
core each, the others idle when N is below the core count). The rule here gives each
process its share instead: ``cores // LOCAL_WORLD_SIZE`` threads (at least one), where
``cores`` are the cores this process may run on (its affinity mask,
:func:`deephash.machine.usable_cores`). ``DEEPHASH_THREADS=k`` overrides it, in one
process too (float results are byte-for-byte reproducible only between runs with equal
thread counts, so the tests that compare one process with two set it to 1 in both). One
process without ``DEEPHASH_THREADS`` keeps torch's own choice (``OMP_NUM_THREADS`` or every
core).

The same share bounds the decoding workers of a process that feeds a GPU
(:func:`deephash.devices.decoding_workers`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from deephash.errors import ConfigError
from deephash.machine import usable_cores

log = logging.getLogger(__name__)

#: the environment variable that sets the threads of each process
THREADS_VARIABLE = "DEEPHASH_THREADS"


def local_processes(environ: Mapping[str, str] | None = None) -> int:
    """The processes on this machine: torchrun's ``LOCAL_WORLD_SIZE`` (1 without it)."""
    value = (os.environ if environ is None else environ).get("LOCAL_WORLD_SIZE", "1")
    try:
        return max(1, int(value))
    except ValueError:
        raise ConfigError(f"LOCAL_WORLD_SIZE={value!r} is not a number; start deephash with "
                          "torchrun --nproc-per-node N --no-python deephash ...") from None


def core_share(cores: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """This process's share of the machine's ``cores`` (default: the usable ones):
    ``cores // LOCAL_WORLD_SIZE``, at least 1."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // local_processes(environ))


def thread_count(cores: int | None = None,
                 environ: Mapping[str, str] | None = None) -> int | None:
    """The torch threads of this process: ``DEEPHASH_THREADS`` when set, else
    :func:`core_share` when torchrun started several processes on this machine, else
    ``None`` (torch's own choice). Raises ``ConfigError`` for a ``DEEPHASH_THREADS`` that
    is not a positive whole number."""
    environ = os.environ if environ is None else environ
    given = environ.get(THREADS_VARIABLE, "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise ConfigError(f"{THREADS_VARIABLE}={given!r} is not a positive whole number; "
                              f"set it to the threads each process may use, e.g. "
                              f"{THREADS_VARIABLE}=4, or unset it")
        return int(given)
    if local_processes(environ) > 1:
        return core_share(cores, environ)
    return None


def apply_thread_rule() -> int:
    """Set torch's intra-op threads by :func:`thread_count` (nothing when it is ``None``);
    returns the threads in effect."""
    import torch

    count = thread_count()
    if count is not None and count != torch.get_num_threads():
        torch.set_num_threads(count)
        log.debug("%d torch threads (%s)", count, THREADS_VARIABLE if os.environ.get(
            THREADS_VARIABLE) else f"{local_processes()} processes share the cores")
    return torch.get_num_threads()
