"""Schedules for any scalar of a loss or regulariser (margin α, weight λ, ...).

A schedule maps training progress to a value. Written on the command line as
``NAME=KIND:START[:END[:EVERY]]``:

- ``constant:V`` — V throughout;
- ``step:START:END[:EVERY]`` — START, doubled every EVERY epochs (default: spread so the
  doublings from START reach END by the last epoch), never above END; e.g. α = 1, 2, 4, 8, 16
  with ``step:1:16`` over 5 (or 10, ...) epochs;
- ``linear:START:END`` — straight line over training;
- ``cosine:START:END`` — half cosine from START to END.

Each kind is one small :class:`Schedule` subclass, registered in
:data:`deephash.registries.SCHEDULES` (``SCHEDULES.create(kind, start, end, every)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from deephash.errors import ConfigError
from deephash.registries import SCHEDULES


@dataclass(frozen=True)
class Schedule:
    """A scalar that moves from ``start`` to ``end`` over training; one subclass per kind."""

    start: float
    end: float
    every: int = 0  # step: epochs per doubling (0: spread over training)

    kind: ClassVar[str] = ""  # its name in SCHEDULES

    def value(self, epoch: int, fraction: float, epochs: int) -> float:
        """Value during ``epoch`` (0-based) of ``epochs``; ``fraction`` = progress in [0, 1]."""
        raise NotImplementedError


class ConstantSchedule(Schedule):
    kind = "constant"

    def value(self, epoch: int, fraction: float, epochs: int) -> float:
        return self.start


class StepSchedule(Schedule):
    """``start`` doubled every ``every`` epochs (0: spread so the doublings reach ``end`` by
    the last epoch), never above ``end``."""

    kind = "step"

    def value(self, epoch: int, fraction: float, epochs: int) -> float:
        doublings = max(0, math.ceil(math.log2(self.end / self.start))) if self.start > 0 else 0
        every = self.every or max(1, epochs // (doublings + 1))
        return min(self.end, self.start * 2 ** (epoch // every))


class LinearSchedule(Schedule):
    kind = "linear"

    def value(self, epoch: int, fraction: float, epochs: int) -> float:
        return self.start + (self.end - self.start) * fraction


class CosineSchedule(Schedule):
    kind = "cosine"

    def value(self, epoch: int, fraction: float, epochs: int) -> float:
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * fraction))


def parse_schedule(text: str) -> tuple[str, Schedule]:
    """``"margin=step:1:16"`` -> ``("margin", StepSchedule(1, 16))``."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not name or parts[0] not in SCHEDULES:
        raise ConfigError(f"bad schedule {text!r}; write NAME=KIND:START[:END[:EVERY]] with "
                          f"KIND one of {', '.join(SCHEDULES)} (e.g. margin=step:1:16)")
    try:
        numbers = [float(p) for p in parts[1:]]
    except ValueError:
        raise ConfigError(f"bad schedule {text!r}: START/END must be numbers") from None
    if not all(math.isfinite(n) and n >= 0 for n in numbers):
        raise ConfigError(f"bad schedule {text!r}: START, END and EVERY must be finite numbers "
                          ">= 0")
    if not numbers or (parts[0] != "constant" and len(numbers) < 2):
        raise ConfigError(f"bad schedule {text!r}: {parts[0]} needs START and END")
    start = numbers[0]
    end = numbers[1] if len(numbers) > 1 else start
    every = int(numbers[2]) if len(numbers) > 2 else 0
    if parts[0] == "step" and (start <= 0 or end < start):
        raise ConfigError(f"bad schedule {text!r}: step needs 0 < START <= END")
    return name.strip(), SCHEDULES.create(parts[0], start, end, every)


def parse_variant(text: str) -> tuple[str, ...]:
    """``"none"`` -> ``()``; ``"margin=step:1:16+quantization=linear:0:0.1"`` -> both."""
    if text.strip() == "none":
        return ()
    parts = tuple(part.strip() for part in text.split("+"))
    names = [parse_schedule(part)[0] for part in parts]  # validates each
    if len(set(names)) != len(names):
        raise ConfigError(f"variant {text!r} schedules one scalar twice")
    return parts
