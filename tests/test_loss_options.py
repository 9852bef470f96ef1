"""``--loss-options NAME=VALUE``: each hashing method's hyper-parameters reach its loss, the
declared defaults are the losses' own, bad options are refused, old configs load."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_training_setup

from deephash.cli import build_config, build_parser
from deephash.command_configs import HashConfig
from deephash.config import load_yaml
from deephash.errors import ConfigError
from deephash.losses import create_loss, loss_options
from deephash.losses.options import LossOption, parse_loss_options
from deephash.registries import HASHING_METHODS, LOSSES
from deephash.studies.run_folder import config_changes, saved_config
from deephash.training.config import TrainConfig, TrainingConfig

#: (method, its option, a value unlike the default, the loss attribute it sets)
METHOD_OPTIONS = [
    ("csq", "lambda", 0.003, "quantization_weight"),
    ("orthohash", "s", 5.5, "scale"),
    ("orthohash", "m", 0.35, "margin"),
    ("greedyhash", "alpha", 0.25, "penalty_weight"),
    ("dpsh", "eta", 2.5, "eta"),
    ("hashnet", "alpha", 0.4, "alpha"),
    ("hashnet", "gamma", 0.02, "gamma"),
    ("hashnet", "p", 0.75, "power"),
    ("hashnet", "step", 50, "step_size"),
    ("dsh", "alpha", 0.2, "alpha"),
]


def method_loss(method: str, options: tuple[str, ...], bits: int = 16) -> torch.nn.Module:
    """The loss ``hash --method`` trains: the method's config from ``hash``'s defaults with
    ``options``, built as the training setup builds it."""
    from deephash.training.methods import dtsh_training

    base = dataclasses.replace(dtsh_training(), loss_options=options, embedding_dim=bits)
    cfg = HASHING_METHODS.create(method, base)
    return create_loss(cfg.loss, cfg.margin, cfg.distance, cfg.reduction, num_classes=10,
                       embedding_dim=cfg.embedding_dim, options=cfg.loss_options)


@pytest.mark.parametrize(("method", "name", "value", "attribute"), METHOD_OPTIONS)
def test_each_methods_option_reaches_its_loss(method: str, name: str, value: float,
                                              attribute: str) -> None:
    default = getattr(method_loss(method, ()), attribute)
    assert default != value  # the case changes something
    loss = method_loss(method, (f"{name}={value}",))
    assert getattr(loss, attribute) == value
    assert type(getattr(loss, attribute)) is type(default)  # step_size stays an int


def test_options_combine_and_leave_the_others_at_their_defaults() -> None:
    loss = method_loss("hashnet", ("gamma=0.01", "step=10"), bits=40)
    assert (loss.alpha, loss.gamma, loss.power, loss.step_size) == (10 / 40, 0.01, 0.5, 10)
    loss.steps.fill_(25)
    assert loss.beta == pytest.approx((1 + 0.01 * 20) ** 0.5)  # the schedule uses them


def test_the_option_changes_the_loss_value() -> None:
    codes = torch.tensor([[0.5, -0.2, 0.9, -0.7], [0.1, 0.3, -0.4, 0.8]])
    labels = torch.tensor([0, 1])
    zero = create_loss("csq", 0.0, num_classes=2, embedding_dim=4, options=["lambda=0"])
    one = create_loss("csq", 0.0, num_classes=2, embedding_dim=4, options=["lambda=1"])
    gap = one.compute(codes, labels).loss - zero.compute(codes, labels).loss
    assert float(gap) == pytest.approx(float(((codes.abs() - 1) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize("name", list(LOSSES))
def test_declared_defaults_are_the_constructors(name: str) -> None:
    """The defaults a user reads (docs, errors) are those a loss built without options has;
    every option fills a constructor argument."""
    loss = create_loss(name, 0.5, num_classes=3, embedding_dim=8)
    params = inspect.signature(type(loss).__init__).parameters
    for option in type(loss).options.values():
        assert option.keyword in params
        if not isinstance(option.default, str):
            assert getattr(loss, option.keyword) == option.default
            assert option.accepts(option.default)


def test_loss_options_are_listed_with_defaults_and_bounds() -> None:
    assert loss_options("csq") == "lambda=0.0001 (>= 0)"
    assert loss_options("orthohash") == "s=8 (> 0), m=0.2 (in [0, 2])"
    assert loss_options("hashnet") == ("alpha=10/K (> 0), gamma=0.005 (>= 0), p=0.5 (>= 0), "
                                       "step=200 (whole, >= 1)")
    assert loss_options("facenet") == "none"


@pytest.mark.parametrize(("entries", "message"), [
    (["lambda=0", "lambda=0"], "--loss-options names 'lambda' twice"),
    (["=1"], "--loss-options =1: give NAME=VALUE"),
    (["lambda=1e-3x"], "lambda must be a number >= 0 (default 0.0001)"),
    (["lambda=-0.0"], None),  # -0.0 >= 0: accepted
])
def test_parse_edge_cases(entries: list[str], message: str | None) -> None:
    from deephash.losses import CSQLoss

    if message is None:
        assert parse_loss_options("csq", CSQLoss.options, entries) == {
            "quantization_weight": 0.0}
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_loss_options("csq", CSQLoss.options, entries)


def test_open_and_closed_bounds() -> None:
    option = LossOption("x", 1.0, "", low=0.0, high=2.0, open_low=True)
    assert [option.accepts(v) for v in (0.0, 1e-9, 2.0, 2.0001)] == [False, True, True, False]
    assert option.bounds() == "in (0, 2]"


def test_flag_and_yaml_set_the_field(image_folder: Path, tmp_path: Path) -> None:
    argv = ["hash", "--data-dir", str(image_folder), "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--method", "orthohash",
            "--loss-options", "s=4", "m=0.3"]
    config = build_config("hash", build_parser().parse_args(argv))
    assert config.training.loss_options == ("s=4", "m=0.3")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved_config(config)))
    assert yaml.safe_load(path.read_text())["training"]["loss_options"] == ["s=4", "m=0.3"]
    assert load_yaml(HashConfig, path) == config
    assert not (tmp_path / "out").exists()


def test_an_old_config_without_the_field_loads_and_resumes_unchanged(tmp_path: Path) -> None:
    """A config.yaml (or checkpoint) written before ``loss_options`` existed reads as the
    default, and a resumed run with the default sees no change."""
    config = TrainConfig(training=TrainingConfig(loss="dtsh", epochs=3))
    saved = saved_config(config)
    del saved["training"]["loss_options"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved))
    assert load_yaml(TrainConfig, path).training.loss_options == ()
    assert config_changes(saved, config) == []
    changed = dataclasses.replace(config, training=dataclasses.replace(
        config.training, loss_options=("x=1",)))
    assert config_changes(saved, changed) == ['training.loss_options [] -> ["x=1"]']


def test_the_training_setup_builds_the_loss_with_its_options(folder: Path,
                                                             tmp_path: Path) -> None:
    setup, _, _ = tiny_training_setup(folder, tmp_path, TrainingConfig(
        loss="greedyhash", loss_options=("alpha=0.5",), activation="none", normalize=False,
        batch_classes=2, batch_samples=4, hidden_dims=(16,), embedding_dim=8, epochs=1,
        flip_augment=False))
    assert setup.loss.penalty_weight == 0.5


@pytest.mark.parametrize("name", [name for name in LOSSES if loss_options(name) != "none"])
def test_docs_list_each_losss_options_and_defaults(name: str) -> None:
    """docs/methods.md's table of options stays the losses' declarations."""
    doc = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}` |"))
    loss = create_loss(name, 1.0, num_classes=3, embedding_dim=8)
    for option, declared in type(loss).options.items():
        assert f"`{option}={declared.default_text()}`" in row
