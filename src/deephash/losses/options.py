"""A loss's own hyper-parameters, set by ``--loss-options NAME=VALUE ...`` (``loss_options``
of :class:`~deephash.training.config.TrainingConfig`, in YAML too).

Each loss class declares the options it takes in one place, its ``options`` class
attribute: a mapping of the option's name (the paper's symbol: ``lambda``, ``s``,
``alpha``) to a :class:`LossOption` (the constructor argument it fills, the default, the
bounds, a line of help). :func:`parse_loss_options` checks the given entries against it and
returns the constructor arguments; :func:`deephash.validation.validate` runs it (through
:func:`deephash.losses.create_loss`) before any extraction, so a bad option is a one-line
``ConfigError``. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deephash.errors import ConfigError


@dataclass(frozen=True)
class LossOption:
    """One option: ``keyword`` the constructor argument it sets; ``default`` the paper's
    value (a text such as ``"10/K"``: derived from the code length K); a value lies in
    ``[low, high]`` (``open_low``: strictly above ``low``); ``integer``: a whole number."""

    keyword: str
    default: float | str
    help: str
    low: float = 0.0
    high: float = math.inf
    open_low: bool = False
    integer: bool = False

    def bounds(self) -> str:
        """``'> 0'``, ``'>= 0'`` or ``'in [0, 2]'``."""
        if math.isinf(self.high):
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"

    def accepts(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high

    def default_text(self) -> str:
        return self.default if isinstance(self.default, str) else f"{self.default:g}"

    def describe(self, name: str) -> str:
        """``'lambda=0.0001 (>= 0)'``: the option's name, default and bounds."""
        return f"{name}={self.default_text()} ({'whole, ' if self.integer else ''}{self.bounds()})"


def describe_options(options: Mapping[str, LossOption]) -> str:
    """``'s=8 (> 0), m=0.2 (in [0, 2])'``, or ``'none'``."""
    return ", ".join(option.describe(name) for name, option in options.items()) or "none"


def _number(item: str, name: str, text: str, option: LossOption) -> float | int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    kind = "a whole number" if option.integer else "a number"
    if (not math.isfinite(value) or (option.integer and value != int(value))
            or not option.accepts(value)):
        raise ConfigError(f"--loss-options {item}: {name} must be {kind} {option.bounds()} "
                          f"(default {option.default_text()})")
    return int(value) if option.integer else value


def parse_loss_options(loss: str, options: Mapping[str, LossOption],
                       entries: Iterable[str]) -> dict[str, Any]:
    """``("lambda=0.001",)`` for the ``loss`` whose declared ``options`` are given ->
    ``{"quantization_weight": 0.001}`` (constructor keyword -> a float, or an int for an
    ``integer`` option). Refuses (``ConfigError``, one line) a malformed entry,
    an option the loss does not take (listing those it does), a value out of bounds, an
    option given twice."""
    chosen: dict[str, Any] = {}
    for item in entries:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--loss-options {item}: give NAME=VALUE, e.g. lambda=0.001")
        if not options:
            raise ConfigError(f"--loss-options {item}: the {loss} loss takes no options; drop "
                              "--loss-options (docs/methods.md lists each loss's)")
        if name not in options:
            raise ConfigError(f"--loss-options {item}: the {loss} loss has no option {name!r}; "
                              f"its options: {describe_options(options)}")
        keyword = options[name].keyword
        if keyword in chosen:
            raise ConfigError(f"--loss-options names {name!r} twice; give each option once")
        chosen[keyword] = _number(item, name, text.strip(), options[name])
    return chosen


__all__ = ["LossOption", "describe_options", "parse_loss_options"]
