from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deephash.config import (
    add_arguments,
    apply_arguments,
    check_fields,
    from_dict,
    load_yaml,
    save_yaml,
)
from deephash.errors import ConfigError
from deephash.studies.baseline_config import BaselineConfig


@dataclass
class Inner:
    size: int = 3
    name: str | None = None


@dataclass
class Outer:
    ks: tuple[int, ...] = (1, 5)
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    renamed: str = field(default="x", metadata={"flag": "--other"})


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Outer)
    return parser.parse_args(argv)


def test_only_given_flags_override() -> None:
    base = Outer(ks=(7,), inner=Inner(size=9, name="keep"))
    updated = apply_arguments(base, parse(["--size", "4", "--flag"]))
    assert updated == Outer(ks=(7,), flag=True, inner=Inner(size=4, name="keep"))
    assert apply_arguments(base, parse([])) == base


def test_tuple_and_renamed_flags() -> None:
    updated = apply_arguments(Outer(), parse(["--ks", "2", "3", "--other", "y"]))
    assert updated.ks == (2, 3) and updated.renamed == "y"


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = BaselineConfig(out="somewhere", seed=5)
    config.evaluation.knn_k = (3,)
    save_yaml(config, tmp_path / "c.yaml")
    assert load_yaml(BaselineConfig, tmp_path / "c.yaml") == config


def test_unknown_and_mistyped_fields_are_errors() -> None:
    with pytest.raises(ConfigError, match="unknown config field"):
        from_dict(Outer, {"nope": 1})
    with pytest.raises(ConfigError, match=r"inner.size"):
        from_dict(Outer, {"inner": {"size": "big"}})
    with pytest.raises(ConfigError, match="true or false"):
        from_dict(Outer, {"flag": "yes"})


def _positive_even(value: int) -> None:
    if value % 2:
        raise ConfigError(f"{value} is odd")


@dataclass
class Bounded:
    count: int = field(default=1, metadata={"min": 1, "max": 9})
    rate: float = field(default=0.5, metadata={"above": 0, "below": 1})
    sizes: tuple[int, ...] = field(default=(2, 4), metadata={"min": 1, "parse": _positive_even})
    kind: str = field(default="a", metadata={"choices": ("a", "b")})
    inner: Inner = field(default_factory=Inner)


@pytest.mark.parametrize("changes, message", [
    ({"count": 0}, r"^--count must be at least 1, got 0$"),
    ({"count": 10}, r"^--count must be at most 9, got 10$"),
    ({"rate": 0.0}, r"^--rate must be greater than 0, got 0$"),
    ({"rate": 1.0}, r"^--rate must be less than 1, got 1$"),
    ({"sizes": (2, 0)}, r"^--sizes must be at least 1, got 0$"),
    ({"sizes": (2, 3)}, r"^--sizes: 3 is odd$"),
    ({"kind": "c"}, r"^--kind: unknown value 'c'; known: a, b$"),
])
def test_field_metadata_bounds_choices_and_parse(changes: dict[str, object],
                                                 message: str) -> None:
    check_fields(Bounded())  # defaults pass
    with pytest.raises(ConfigError, match=message):
        check_fields(Bounded(**changes))  # type: ignore[arg-type]


def test_parser_applies_choices_and_parse_as_argparse_errors(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Bounded)
    assert parser.parse_args(["--sizes", "2", "6", "--kind", "b"]).sizes == [2, 6]
    for argv, message in ((["--sizes", "3"], "argument --sizes: 3 is odd"),
                          (["--kind", "c"], "argument --kind: invalid choice: 'c'")):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert message in capsys.readouterr().err
    assert "(default: 1; at least 1; at most 9)" in parser.format_help()


def test_yaml_values_are_checked_like_flags(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("count: 0\n")
    config = load_yaml(Bounded, tmp_path / "c.yaml")  # loading keeps the value ...
    with pytest.raises(ConfigError, match="--count must be at least 1"):
        check_fields(config)  # ... the check (validate) refuses it


@pytest.mark.parametrize("text, message", [("a: [1\n", r"not valid YAML \(line 2\)"),
                                           ("- 1\n", "must hold a mapping")])
def test_broken_yaml_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(Outer, tmp_path / "c.yaml")


def test_configs_import_no_torch() -> None:
    code = ("import sys, deephash.studies.configs, deephash.validation, deephash.registries; "
            "print([m for m in ('torch', 'numpy', 'faiss') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_a_partial_nested_mapping_keeps_the_commands_own_defaults() -> None:
    """``training: {epochs: 3}`` in a hash YAML (or a study stage) changes the epochs of
    DTSH's training defaults, not of the generic triplet defaults."""
    from deephash.studies.configs import HashConfig, dtsh_training

    config = from_dict(HashConfig, {"training": {"epochs": 3}, "hashing": {"bits": [16]}})
    expected = dataclasses.replace(dtsh_training(), epochs=3)
    assert config.training == expected and config.hashing.bits == (16,)
