"""Typed configuration: dataclasses saved as YAML and overridable from the command line.

Every leaf field of a (nested) config dataclass becomes one command-line flag. The flag
is ``--field-name`` unless the field's metadata names another (``{"flag": "--backbone"}``);
its help text comes from ``metadata["help"]``. Only flags the user actually gives
override the values loaded from ``--config FILE`` or the dataclass defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
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
    kwargs = {k: _coerce(hints[k], v, prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def save_yaml(config: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_yaml(cls: type[C], path: Path) -> C:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
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


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per leaf field of ``cls``; unspecified flags stay absent."""
    for path, tp, f in _leaves(cls):
        flag = f.metadata.get("flag", "--" + path[-1].replace("_", "-"))
        inner, _optional = _leaf_type(tp)
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {_default_of(f)})".strip()
        kwargs: dict[str, Any] = {"dest": "__".join(path), "default": argparse.SUPPRESS,
                                  "help": help_text}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        elif inner is not bool:
            kwargs["metavar"] = path[-1].upper()
        if f.metadata.get("positional"):
            del kwargs["dest"]
            parser.add_argument("__".join(path), nargs="?", **kwargs)
        elif inner is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif typing.get_origin(inner) is tuple:
            parser.add_argument(flag, nargs="*", type=typing.get_args(inner)[0], **kwargs)
        else:
            parser.add_argument(flag, type=inner, **kwargs)


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
