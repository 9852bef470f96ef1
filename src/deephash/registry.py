"""One registry mechanism for every kind of component: backbones, protocols, losses,
miners, distances, indexes, hashing methods, runtimes, regularisers, schedule kinds and
training procedures (the tables: :mod:`deephash.registries`).

A registry maps a short name to a factory. An entry is either registered eagerly (the
``register`` decorator) or *lazily*: the name maps to ``"module:attribute"`` (a
:class:`Lazy`), and the module is imported on the first ``get``/``create``. Lazy tables
(:mod:`deephash.registries`) let the command line list and check every name without
importing torch. The CLI builds components by name and the tests iterate over ``names()``
so every registered component gets the same checks.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from deephash.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Lazy:
    """A factory named by ``"module:attribute"``, imported when first used; ``args`` are
    bound in front of the caller's arguments (``Lazy("m:build", ("resnet18",))``)."""

    target: str
    args: tuple[object, ...] = ()

    def resolve(self) -> Callable[..., object]:
        module_name, _, attribute = self.target.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        if not callable(factory):
            raise TypeError(f"{self.target} is not callable")
        return partial(factory, *self.args) if self.args else factory


class Registry(Generic[T]):
    """Name -> factory map for one kind of component.

    >>> models = Registry[int]("model")
    >>> @models.register("one")
    ... def make_one() -> int:
    ...     return 1
    >>> models.create("one")
    1
    >>> lazy = Registry[str]("joiner", {"comma": Lazy("operator:add", (",",))})
    >>> lazy.names(), lazy.create("comma", "x")
    (['comma'], ',x')
    """

    def __init__(self, kind: str, lazy: Mapping[str, Lazy | str] | None = None) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._lazy: dict[str, Lazy] = {
            name: entry if isinstance(entry, Lazy) else Lazy(entry)
            for name, entry in (lazy or {}).items()}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """The factory of ``name`` (importing its module for a lazy entry)."""
        if name not in self._factories:
            if name not in self._lazy:
                raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self)}")
            self._factories[name] = self._lazy[name].resolve()  # type: ignore[assignment]
        return self._factories[name]

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (eager and lazy) matching a shell-style pattern, sorted."""
        return sorted(n for n in {*self._factories, *self._lazy} if fnmatch.fnmatch(n, pattern))

    def lazy_target(self, name: str) -> str | None:
        """``"module:attribute"`` of a lazy entry, else ``None``."""
        entry = self._lazy.get(name)
        return entry.target if entry else None

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        """The names, sorted (so a registry serves as argparse ``choices``)."""
        return iter(self.names())
