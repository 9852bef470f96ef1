"""The registry mechanism, and every registry's entries: each resolves and builds what its
name says."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from deephash import registries as registries_module
from deephash.backbones import BACKBONES
from deephash.data import make_splits
from deephash.errors import ConfigError
from deephash.index import create_index
from deephash.losses import BATCH_DISTANCES, create_loss
from deephash.metrics.distances import get_distance
from deephash.miners import create_miner
from deephash.registries import HASHING_METHODS, INDEXES, LISTABLE, RUNTIMES, parse_index
from deephash.registry import Lazy, Registry
from deephash.studies.configs import dtsh_training
from deephash.training.config import TrainingConfig


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
    return kind.replace("<M>", "8").replace("<h>", "2")


#: registry -> (a registered name -> the name of what its factory built)
PROBES: dict[str, Callable[[str], str]] = {
    # building every backbone is test_backbones' job; here: the factory is the named one
    "backbones": lambda name: (getattr(BACKBONES.get(name), "args", ()) or
                               (BACKBONES.get(name).__name__,))[0],
    "protocols": lambda name: make_splits(name, np.repeat(np.arange(2), 700),
                                          np.arange(1400) % 7 == 0, seed=0).protocol,
    "losses": lambda name: create_loss(name, 0.2, num_classes=3, embedding_dim=4).name,
    "miners": lambda name: create_miner(name, 0.2).name,
    "train-distances": lambda name: BATCH_DISTANCES.create(name).name,
    "distances": lambda name: get_distance(name).name,
    "indexes": lambda name: (name if isinstance(create_index(_index_example(name), 64),
                                                INDEXES.get(name))
                             and create_index(_index_example(name), 64).factory
                             == _index_example(name) else "?"),
    "hashing-methods": lambda name: (
        "zhuang" if HASHING_METHODS.create(name, TrainingConfig()).procedure == "zhuang"
        else "dtsh" if HASHING_METHODS.create(name, dtsh_training()) == dtsh_training()
        else "?"),
    # building every runtime is test_runtimes' job; here: the class names its runtime
    "runtimes": lambda name: RUNTIMES.get(name).name,
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

    assert set(BACKBONES.names()) == {"efficientnet_lite0", *ARCHITECTURES}


@pytest.mark.parametrize("factory, parsed", [
    ("BFlat", ("BFlat", None)), ("BFlat-numpy", ("BFlat-numpy", None)), ("Flat", ("Flat", None)),
    ("BHNSW32", ("BHNSW<M>", 32)), ("BMIH4", ("BMIH<h>", 4)),
])
def test_index_factory_strings_parse(factory: str, parsed: tuple[str, int | None]) -> None:
    assert parse_index(factory) == parsed


@pytest.mark.parametrize("factory", ["BHNSW", "BHNSW0", "BMIHx", "IVF4096", "BHNSW<M>", "flat",
                                     ""])
def test_bad_index_factory_strings_are_refused(factory: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown index '{re.escape(factory)}'; known: BFlat"):
        parse_index(factory)
