"""Typed configuration: dataclasses saved as YAML and overridable from the command line.

Every leaf field of a (nested) config dataclass becomes one command-line flag. The flag
is ``--field-name`` unless the field's metadata names another (``{"flag": "--backbone"}``),
and ``metadata["aliases"]`` adds other names for it (an option's old name); its help text
comes from ``metadata["help"]``. Only flags the user actually gives
override the values loaded from ``--config FILE`` or the dataclass defaults.

A field's metadata also declares what values it accepts, once, for the parser, a YAML
file and library calls alike (:func:`check_fields`): ``choices`` (a registry or a tuple of
names; the parser lists them in ``--help``), ``min``/``max`` (inclusive) and ``above``/
``below`` (exclusive) bounds on a number or on every number of a tuple, and ``parse`` (a
function that raises ``ConfigError`` for a bad value). Every float must be finite (no NaN,
no infinity), and a tuple may not name a value twice unless its metadata says
``"repeats": True`` (a head's hidden widths). A YAML value must have its field's type: an
int field takes neither ``true`` nor ``1.5``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import operator
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from deephash.errors import ConfigError

C = TypeVar("C")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain ``dict`` of a config dataclass (tuples become lists, for YAML)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}



def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping (:func:`to_dict`) with dotted keys:
    ``{"training": {"margin": 0.2}}`` -> ``{"training.margin": 0.2}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

def _leaf_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X`` or ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported config type {tp}")
        return args[0], True
    return tp, False


def _coerce(tp: Any, value: Any, where: str) -> Any:
    inner, optional = _leaf_type(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config field {where} must not be empty")
    if isinstance(inner, type) and dataclasses.is_dataclass(inner):
        if not isinstance(value, dict):
            raise ConfigError(f"config field {where} must be a mapping")
        return from_dict(inner, value, prefix=f"{where}.")
    if typing.get_origin(inner) is tuple:
        (item_type, _ellipsis) = typing.get_args(inner)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(item_type, v, where) for v in value)
    if inner is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config field {where} must be true or false, got {value!r}")
        return value
    whole = inner is int
    if (inner in (int, float) and isinstance(value, bool)) or (
            whole and isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"config field {where} must be a {'whole ' if whole else ''}number, "
                          f"got {value!r}")
    try:
        return inner(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config field {where}: {value!r} is not a {inner.__name__}") from None


def from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build a config dataclass from a mapping; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(prefix + u for u in unknown)}; "
            f"known: {', '.join(sorted(names))}"
        )
    defaults = {f.name: f.default_factory for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if f.default_factory is not dataclasses.MISSING}
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in defaults:
            default = defaults[key]()
            if dataclasses.is_dataclass(default):  # a partial mapping overlays the field's own
                value = overlay(to_dict(default), value)  # default (hash: DTSH's training)
        kwargs[key] = _coerce(hints[key], value, prefix + key)
    return cls(**kwargs)


def overlay(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, nested mappings key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (overlay(out[key], value) if isinstance(value, Mapping)
                    and isinstance(out.get(key), Mapping) else value)
    return out


def save_yaml(config: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_yaml(cls: type[C], path: Path) -> C:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}; fix it or save a run's "
                          "config.yaml again") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value, not a "
                          f"{type(data).__name__}")
    return from_dict(cls, data)


def _leaves(cls: type, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(_leaf_type(tp)[0]):
            out.extend(_leaves(_leaf_type(tp)[0], (*path, f.name)))
        else:
            out.append(((*path, f.name), tp, f))
    return out


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def default_at(cls: type, path: tuple[str, ...]) -> Any:
    """The default of the leaf at ``path`` of ``cls`` as ``cls`` sets it: a nested field's
    default is read from its parent's default, so ``hash``'s ``training.loss`` is DTSH's
    ``dtsh``, not ``TrainingConfig``'s ``facenet``."""
    value = _default_of(next(f for f in dataclasses.fields(cls) if f.name == path[0]))
    for name in path[1:]:
        value = getattr(value, name)
    return value


def shown(value: Any) -> str:
    """A default as the command line writes it: a tuple's items separated by spaces
    (``quantization=0.1 balance=0.1``), an empty one ``none``."""
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "none"
    return str(value)


#: metadata key -> (how the bound reads, what a value within it satisfies)
_BOUNDS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "min": ("at least", operator.ge), "max": ("at most", operator.le),
    "above": ("greater than", operator.gt), "below": ("less than", operator.lt)}


def _flag(path: tuple[str, ...], f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("flag", "--" + path[-1].replace("_", "-")))


def _parsed_by(item_type: Any, check: Any) -> Any:
    """An argparse ``type`` that converts with ``item_type`` and then runs ``check``."""

    def convert(text: str) -> Any:
        value = item_type(text)
        try:
            check(value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    convert.__name__ = getattr(item_type, "__name__", "value")
    return convert


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per leaf field of ``cls``; unspecified flags stay absent. Each help text
    ends with the default ``cls`` gives the field (:func:`default_at`)."""
    for path, tp, f in _leaves(cls):
        flag = _flag(path, f)
        flags = (flag, *f.metadata.get("aliases", ()))
        inner, _optional = _leaf_type(tp)
        help_text = f.metadata.get("help", "")
        bounds = "".join(f"; {word} {f.metadata[key]}" for key, (word, _) in _BOUNDS.items()
                         if key in f.metadata)
        help_text = f"{help_text} (default: {shown(default_at(cls, path))}{bounds})".strip()
        kwargs: dict[str, Any] = {"dest": "__".join(path), "default": argparse.SUPPRESS,
                                  "help": help_text}
        if "choices" in f.metadata:
            kwargs["choices"] = tuple(f.metadata["choices"])  # a registry iterates its names
        elif inner is not bool:
            kwargs["metavar"] = path[-1].upper()
        item_type = typing.get_args(inner)[0] if typing.get_origin(inner) is tuple else inner
        if "parse" in f.metadata:
            item_type = _parsed_by(item_type, f.metadata["parse"])
        if f.metadata.get("positional"):
            del kwargs["dest"]
            kwargs.pop("metavar", None)
            if typing.get_origin(inner) is tuple:
                kwargs["type"] = item_type
            parser.add_argument("__".join(path), nargs="*" if typing.get_origin(inner) is tuple
                                else "?", metavar=path[-1].upper(), **kwargs)
        elif inner is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(inner) is tuple:
            parser.add_argument(*flags, nargs="*", type=item_type, **kwargs)
        else:
            parser.add_argument(*flags, type=item_type, **kwargs)


def _bound_error(value: float, meta: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` under the ``min``/``max``/``above``/``below`` bounds."""
    for key, (word, within) in _BOUNDS.items():
        if key in meta and not within(value, meta[key]):
            return f"{word} {meta[key]}"
    return None


def _check_value(value: Any, meta: Mapping[str, Any], option: str) -> None:
    if "choices" in meta and value not in meta["choices"]:
        kind = getattr(meta["choices"], "kind", "value")
        raise ConfigError(f"{option}: unknown {kind} {value!r}; known: "
                          f"{', '.join(meta['choices'])}")
    if "parse" in meta:
        try:
            meta["parse"](value)
        except ConfigError as exc:
            raise ConfigError(f"{option}: {exc}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number, got {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        wrong = _bound_error(value, meta)
        if wrong:
            shown = value if isinstance(value, int) else f"{value:g}"
            raise ConfigError(f"{option} must be {wrong}, got {shown}")


def check_fields(config: Any) -> None:
    """Check every leaf of a (nested) config against its metadata's ``choices``, ``parse``
    and bounds; the ``ConfigError`` names the flag and, when nested, the YAML field."""
    for path, _tp, f in _leaves(type(config)):
        value: Any = config
        for name in path:
            value = getattr(value, name)
        dotted = ".".join(path)
        flag = _flag(path, f)
        option = flag if flag.lstrip("-") == dotted.replace("_", "-") else f"{flag} ({dotted})"
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None:
                _check_value(item, f.metadata, option)
        if isinstance(value, tuple) and not f.metadata.get("repeats"):
            _check_unique(value, option)


def _check_unique(values: tuple[Any, ...], option: str) -> None:
    """Refuse a list option that names a value twice (``--bits 16 16`` would train and
    write the same sub-run twice)."""
    seen: set[Any] = set()
    for item in values:
        if item in seen:
            raise ConfigError(f"{option} lists {item!r} more than once; give each value once")
        seen.add(item)


def apply_arguments(config: C, namespace: argparse.Namespace) -> C:
    """A copy of ``config`` with every flag present in ``namespace`` applied."""
    for path, tp, _f in _leaves(type(config)):
        dest = "__".join(path)
        if not hasattr(namespace, dest):
            continue
        value = _coerce(tp, getattr(namespace, dest), ".".join(path))
        config = _replace_path(config, path, value)
    return config


def _replace_path(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    child = getattr(config, path[0])
    return dataclasses.replace(config, **{path[0]: _replace_path(child, path[1:], value)})


def _shared_base(cls: type, base: type) -> type:
    """The most derived config class that both ``cls`` and ``base`` are (or extend)."""
    for ancestor in cls.__mro__:
        if dataclasses.is_dataclass(ancestor) and issubclass(base, ancestor):
            return ancestor
    raise TypeError(f"{cls.__name__} and {base.__name__} share no configuration class; "
                    f"build a {cls.__name__} from a config that extends one of its bases")


def _unknown(cls: type, names: Any) -> None:
    """Refuse ``names`` that are not fields of the config class ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(names) - known):
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(known))}")


def _changed(value: Any, change: Any) -> Any:
    """``value`` with ``change`` applied: a mapping changes only the named fields of a
    nested config (recursively), anything else replaces it."""
    if not (isinstance(change, Mapping) and dataclasses.is_dataclass(value)):
        return change
    _unknown(type(value), change)
    return dataclasses.replace(value, **{name: _changed(getattr(value, name), sub)  # type: ignore[type-var]
                                         for name, sub in change.items()})


def variant(base: Any, cls: type[C], /, **changes: Any) -> C:
    """A ``cls`` config that is ``base`` with ``changes``: the variant of one base
    configuration that a study runs.

    ``base`` and ``cls`` extend a shared config class (``LossStudyConfig`` and
    ``SelectMarginConfig`` both extend ``TrainConfig``); the fields of that class are
    copied from ``base``, the other fields of ``cls`` keep their defaults. A change to a
    nested config may be a mapping, which changes only the fields it names
    (``training={"margin": 0.4}``), or a whole config (``training=TrainingConfig()``).
    A loss study's run of one miner is
    ``variant(study, TrainConfig, out="runs/x", training={"miner": "batch-hard"})``.
    """
    shared = {f.name for f in dataclasses.fields(_shared_base(cls, type(base)))}
    _unknown(cls, changes)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in changes or f.name in shared:
            value = getattr(base, f.name) if f.name in shared else _default_of(f)
            kwargs[f.name] = _changed(value, changes[f.name]) if f.name in changes else value
    return cls(**kwargs)
