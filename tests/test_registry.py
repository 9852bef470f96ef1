import pytest

from deephash.errors import ConfigError
from deephash.registry import Registry


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
