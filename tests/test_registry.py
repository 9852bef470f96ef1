"""The registry mechanism, and every registry's entries: each resolves and builds what its
name says."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deephash import registries as registries_module
from deephash.backbones import BACKBONES, create_backbone
from deephash.cli import COMMANDS, build_parser, main
from deephash.config import _leaves
from deephash.data import make_splits
from deephash.errors import ConfigError
from deephash.hashing.regularizers import REGULARIZERS
from deephash.index import create_index
from deephash.losses import BATCH_DISTANCES, create_loss
from deephash.metrics.distances import get_distance
from deephash.miners import create_miner
from deephash.registries import (
    HASHING_METHODS,
    INDEXES,
    LISTABLE,
    LOGGERS,
    PROCEDURES,
    RUNTIMES,
    parse_index,
)
from deephash.registry import Lazy, Registry
from deephash.studies.configs import ScheduleStudyConfig, dtsh_training
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.schedules import SCHEDULES, parse_schedule
from deephash.validation import validate


def test_register_create_and_list() -> None:
    things = Registry[str]("thing")
    things.register("alpha")(lambda suffix="": "a" + suffix)
    things.register("beta")(lambda suffix="": "b" + suffix)
    assert things.create("alpha", "!") == "a!"
    assert things.names() == ["alpha", "beta"]
    assert things.names("b*") == ["beta"]
    assert "alpha" in things and "gamma" not in things


def test_unknown_name_lists_known_ones() -> None:
    things = Registry[int]("thing")
    things.register("one")(lambda: 1)
    with pytest.raises(ConfigError, match="unknown thing 'two'; known: one"):
        things.create("two")


def test_duplicate_registration_is_refused() -> None:
    things = Registry[int]("thing")
    things.register("one")(lambda: 1)
    with pytest.raises(ValueError, match="twice"):
        things.register("one")(lambda: 2)


def test_lazy_entries_import_their_module_on_first_use(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_plugin.py").write_text("def make(x=1):\n    return ('made', x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    things = Registry[tuple]("thing", {"plain": "lazy_plugin:make",
                                       "bound": Lazy("lazy_plugin:make", (7,))})
    assert things.names() == ["bound", "plain"] and "plain" in things
    assert "lazy_plugin" not in sys.modules  # names are known without importing
    assert things.create("plain") == ("made", 1)
    assert things.create("bound") == ("made", 7)
    assert "lazy_plugin" in sys.modules
    with pytest.raises(ValueError, match="twice"):
        things.register("plain")(lambda: ("again", 0))
    with pytest.raises(ConfigError, match="unknown thing 'other'; known: bound, plain"):
        things.get("other")
    sys.modules.pop("lazy_plugin")


def _index_example(kind: str) -> str:
    return (kind.replace("<M>", "8").replace("<h>", "2").replace("<nlist>", "4")
            .replace("<faiss-factory>", "IVF4,PQ8"))


def _protocol_probe(name: str) -> str:
    """The protocol name the splits record, on data that every protocol can split (four
    classes, a test part and the data's own parts); ``<N>`` stands for 1."""
    pool = np.arange(2800)
    parts = {"query": pool[::10], "train": pool[1::10], "database": np.setdiff1d(pool, pool[::10])}
    splits = make_splits(name.replace("<N>", "1"), pool // 700, pool % 7 == 0, seed=0,
                         parts=parts)
    return splits.protocol.replace(":1", ":<N>")


def _backbone_probe(name: str) -> str:
    """A named backbone's factory names it; ``timm:<NAME>`` builds one timm model (random
    weights) and reads back ``<NAME>`` from its name."""
    if "<NAME>" in name:
        return create_backbone(name.replace("<NAME>", "resnet10t"), "none").name.replace(
            "resnet10t", "<NAME>")
    return (getattr(BACKBONES.get(name), "args", ()) or (BACKBONES.get(name).__name__,))[0]


#: registry -> (a registered name -> the name of what its factory built)
PROBES: dict[str, Callable[[str], str]] = {
    # building every backbone is test_backbones' job; here: the factory is the named one
    "backbones": _backbone_probe,
    "protocols": lambda name: _protocol_probe(name),
    "losses": lambda name: create_loss(name, 0.2, num_classes=3, embedding_dim=4).name,
    "miners": lambda name: create_miner(name, 0.2).name,
    "train-distances": lambda name: BATCH_DISTANCES.create(name).name,
    "distances": lambda name: get_distance(name).name,
    "indexes": lambda name: (name if isinstance(create_index(_index_example(name), 64),
                                                INDEXES.get(name))
                             and create_index(_index_example(name), 64).factory
                             == _index_example(name) else "?"),
    "hashing-methods": lambda name: (
        HASHING_METHODS.create(name, TrainingConfig()).procedure
        if HASHING_METHODS.create(name, TrainingConfig()).procedure in ("zhuang", "itq", "lsh")
        else "dtsh" if HASHING_METHODS.create(name, dtsh_training()) == dtsh_training()
        else HASHING_METHODS.create(name, dtsh_training()).loss),  # a loss of its own
    # building every runtime is test_runtimes' job; here: the class names its runtime
    "runtimes": lambda name: RUNTIMES.get(name).name,
    "regularizers": lambda name: REGULARIZERS.get(name).__name__,
    "schedules": lambda name: SCHEDULES.create(name, 1.0, 4.0).kind,
    # logging is test_loggers' job; here: the class names its backend
    "loggers": lambda name: LOGGERS.get(name).name,
    # running a procedure is test_trainer's and test_zhuang's job; here: the function
    "procedures": lambda name: {"fit": "triplet", "fit_zhuang": "zhuang", "ITQ": "itq",
                                "LSH": "lsh"}.get(PROCEDURES.get(name).__name__, "?"),
}


def test_every_registry_has_a_probe() -> None:
    registries = {kind for kind, table in LISTABLE.items() if isinstance(table, Registry)}
    assert registries == set(PROBES)
    defined = {name for name, value in vars(registries_module).items()
               if isinstance(value, Registry)}
    assert len(defined) == len(registries)  # each registry is listable


@pytest.mark.parametrize("kind, name", [(kind, name) for kind in PROBES
                                        for name in LISTABLE[kind].names()])
def test_every_lazy_entry_builds_what_its_name_says(kind: str, name: str) -> None:
    registry = LISTABLE[kind]
    assert registry.lazy_target(name) is not None  # declared in deephash.registries
    assert callable(registry.get(name))
    assert PROBES[kind](name) == name


def test_backbone_table_matches_the_torchvision_architectures() -> None:
    from deephash.backbones.torchvision_models import ARCHITECTURES

    assert set(BACKBONES.names()) == {"efficientnet_lite0", *ARCHITECTURES, "timm:<NAME>"}


@pytest.mark.parametrize("factory, parsed", [
    ("BFlat", ("BFlat", None)), ("BFlat-numpy", ("BFlat-numpy", None)), ("Flat", ("Flat", None)),
    ("BHNSW32", ("BHNSW<M>", 32)), ("BMIH4", ("BMIH<h>", 4)), ("BIVF4096", ("BIVF<nlist>", 4096)),
    ("IVF4096,PQ32", ("<faiss-factory>", None)), ("HNSW32", ("<faiss-factory>", None)),
    ("OPQ16_64,IVF256,PQ16", ("<faiss-factory>", None)), ("PQ7", ("<faiss-factory>", None)),
])
def test_index_factory_strings_parse(factory: str, parsed: tuple[str, int | None]) -> None:
    assert parse_index(factory) == parsed


@pytest.mark.parametrize("factory", ["BHNSW", "BHNSW0", "BMIHx", "BIVF0", "BHNSW<M>", "flat",
                                     ""])
def test_bad_index_factory_strings_are_refused(factory: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown index '{re.escape(factory)}'; known: BFlat"):
        parse_index(factory)


@pytest.mark.parametrize("kind", list(LISTABLE))
def test_deephash_list_prints_each_registry(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    table = LISTABLE[kind]
    names = table.names() if isinstance(table, Registry) else list(table)
    assert names and len(set(names)) == len(names)
    assert main(["list", kind]) == 0
    assert capsys.readouterr().out.split() == names
    assert main(["list"]) == 0
    assert f"{kind}: {', '.join(names)}" in capsys.readouterr().out.splitlines()


def test_every_registry_of_the_registries_module_is_listed() -> None:
    tables = [value for name, value in vars(registries_module).items()
              if name.isupper() and isinstance(value, (Registry, tuple))]
    listed = [id(table) for table in LISTABLE.values()]
    # RUNTIME_CHOICES is RUNTIMES plus "auto"; PRECISIONS are the runtimes' number formats
    unlisted = [table for table in tables if id(table) not in listed]
    assert unlisted == [registries_module.RUNTIME_CHOICES, registries_module.PRECISIONS]


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regularizer_builds_a_scalar_that_vanishes_on_balanced_binary_codes(
        name: str) -> None:
    balanced = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])  # each bit ±1 half the time
    drifted = torch.tensor([[0.5, 0.2, 0.9], [0.4, 0.3, 0.7]])  # soft and all positive
    assert REGULARIZERS.create(name, balanced).shape == ()
    assert REGULARIZERS.create(name, balanced).item() == 0.0
    assert REGULARIZERS.create(name, drifted).item() > 0.0


@pytest.mark.parametrize("kind", SCHEDULES.names())
def test_every_schedule_kind_parses_and_runs_from_start_to_end(kind: str) -> None:
    name, schedule = parse_schedule(f"margin={kind}:2:8")
    assert name == "margin" and type(schedule) is SCHEDULES.get(kind)
    epochs = 5
    values = [schedule.value(e, e / (epochs - 1), epochs) for e in range(epochs)]
    assert values[0] == 2.0
    assert values[-1] == (2.0 if kind == "constant" else 8.0)
    assert all(2.0 <= v <= 8.0 for v in values)


def test_unknown_schedule_kind_and_regularizer_name_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=f"KIND one of {', '.join(SCHEDULES)} "):
        parse_schedule("margin=wobble:1:2")
    from deephash.hashing.regularizers import get_regularizer

    with pytest.raises(ConfigError, match=f"^unknown regulariser 'sparsity'; known: "
                                          f"{', '.join(REGULARIZERS)}$"):
        get_regularizer("sparsity")


#: fields whose choices are not components (leaf field name -> what they are instead)
NOT_COMPONENTS = {
    "small_classes": "an option's values (replace, error)",
    "preset": "the shipped study YAMLs, listed from their folder (deephash/studies/presets)",
}


def _choice_fields() -> list[tuple[str, tuple[str, ...], Any]]:
    """(command, field path, its choices) for every field with ``choices``."""
    return [(command, path, f.metadata["choices"]) for command, spec in COMMANDS.items()
            for path, _tp, f in _leaves(spec.config) if "choices" in f.metadata]


def _registry_fields() -> list[tuple[str, str, Any]]:
    """(command, argparse dest, choices) for every field whose choices name components."""
    return [(command, "__".join(path), choices) for command, path, choices in _choice_fields()
            if path[-1] not in NOT_COMPONENTS]


def test_the_fields_exempt_from_registries_exist() -> None:
    assert {path[-1] for _c, path, _choices in _choice_fields()} >= set(NOT_COMPONENTS)
    assert len(_registry_fields()) >= 12  # backbone, protocol, loss, miner, mode, ...


@pytest.mark.parametrize("command, dest, choices", _registry_fields())
def test_parser_choices_are_the_registry_names(command: str, dest: str, choices: Any) -> None:
    tables = [value for name, value in vars(registries_module).items() if name.isupper()]
    assert any(choices is table for table in tables), f"{dest}: choices not from registries"
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if a.dest == dest)
    assert list(action.choices) == list(choices)
    assert len(list(choices)) >= 2


def test_the_list_command_offers_every_listable_kind() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices["list"]._actions if a.dest == "what")
    assert list(action.choices) == list(LISTABLE)


@pytest.mark.parametrize("scheduled", ["margin=step:1:16", "quantization=linear:0:0.1",
                                       "balance=constant:0.1"])
def test_validation_accepts_what_training_can_schedule(scheduled: str, tmp_path: Path) -> None:
    config = TrainConfig(out=str(tmp_path / "out"))
    config.data.data_dir = str(tmp_path)
    config.extraction.device = "cpu"
    validate(dataclasses.replace(config, training=dataclasses.replace(
        config.training, schedules=(scheduled,))))


def test_validation_refuses_a_schedule_of_nothing_registered(tmp_path: Path) -> None:
    config = TrainConfig(out=str(tmp_path / "out"))
    config.data.data_dir = str(tmp_path)
    config.extraction.device = "cpu"
    bad = dataclasses.replace(config, training=dataclasses.replace(
        config.training, schedules=("sparsity=constant:1",)))
    with pytest.raises(ConfigError, match="^--schedules sparsity=constant:1: nothing named "
                                          f"'sparsity' to schedule; .*{', '.join(REGULARIZERS)}"):
        validate(bad)
    study = ScheduleStudyConfig(out=str(tmp_path / "study"), variants=(
        "margin=step:1:16+sparsity=step:1:2",))
    study.data.data_dir = str(tmp_path)
    study.extraction.device = "cpu"
    with pytest.raises(ConfigError, match=r"^--variants sparsity=step:1:2: nothing named"):
        validate(study)
