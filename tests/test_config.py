from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deephash.config import add_arguments, apply_arguments, from_dict, load_yaml, save_yaml
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
