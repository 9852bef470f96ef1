"""The shared pipeline (:mod:`deephash.pipeline`) and studies as variants of one base
configuration (:func:`deephash.config.variant`)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deephash.config import load_yaml, variant
from deephash.pipeline.cache import cache_location
from deephash.pipeline.config import BaselineConfig, ExtractionConfig
from deephash.studies.configs import (
    HashConfig,
    IndexConfig,
    LossStudyConfig,
    ScheduleStudyConfig,
    SelectMarginConfig,
)
from deephash.studies.miner_study import with_miner
from deephash.studies.select_margin import with_margin
from deephash.training.config import TrainConfig, TrainingConfig
from tests.conftest import tiny_run_args


def study() -> LossStudyConfig:
    """A loss study whose every part differs from the defaults."""
    base = LossStudyConfig()
    return dataclasses.replace(
        base, out="runs/s", seed=3, overwrite=True, margins=(0.7,),
        data=dataclasses.replace(base.data, protocol="dtsh-1"),
        evaluation=dataclasses.replace(base.evaluation, distance="euclidean"),
        training=dataclasses.replace(base.training, epochs=4, miner="batch-hard", lr=0.01))


def copied(config: object, cls: type, **changes: object) -> object:
    """What the studies wrote before :func:`variant`: every field of ``cls`` copied."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}
    return cls(**{**fields, **changes})


def test_a_variant_copies_the_shared_base_and_changes_only_what_it_names() -> None:
    base = study()
    sub = variant(base, TrainConfig, out="runs/s/x", training={"margin": 0.4, "resume": True})
    assert type(sub) is TrainConfig
    assert sub.training == dataclasses.replace(base.training, margin=0.4, resume=True)
    assert (sub.seed, sub.overwrite, sub.data, sub.evaluation) == (
        3, True, base.data, base.evaluation)
    assert sub.out == "runs/s/x" and base.out == "runs/s"  # the base is left as it was
    assert base.training.margin == 0.2 and not base.training.resume
    whole = TrainingConfig(loss="hoffer")
    assert variant(base, TrainConfig, training=whole).training is whole
    assert variant(base, TrainConfig, data={"protocol": "cifar10"}).data == dataclasses.replace(
        base.data, protocol="cifar10")


def test_a_variant_equals_the_field_copies_it_replaces() -> None:
    base = study()
    training = dataclasses.replace(base.training, margin=0.8, resume=False)
    assert with_margin(base, 0.8, Path("o")) == copied(base, TrainConfig, out="o",
                                                        overwrite=False, training=training)
    training = dataclasses.replace(base.training, miner="batch-all", resume=True)
    assert with_miner(base, "batch-all", Path("o"), resume=True) == copied(
        base, TrainConfig, out="o", overwrite=False, training=training)
    assert variant(base, BaselineConfig, out="b") == copied(base, BaselineConfig, out="b")
    schedule = dataclasses.replace(ScheduleStudyConfig(), seeds=(1, 2), seed=5)
    assert variant(schedule, HashConfig, seed=1) == copied(schedule, HashConfig, seed=1)


def test_a_variant_takes_only_the_shared_fields_of_a_sibling_config() -> None:
    """A loss study's ``margins`` grid is its own field, not the select-margin study's:
    the two only share ``TrainConfig``."""
    base = study()
    sub = variant(base, SelectMarginConfig, out="m")
    assert sub.margins == SelectMarginConfig().margins != base.margins
    assert sub.training == base.training and sub.seed == 3
    assert variant(base, SelectMarginConfig, margins=(0.1,)).margins == (0.1,)


def test_a_variant_refuses_unknown_fields_and_unrelated_configs() -> None:
    with pytest.raises(TypeError, match=r"TrainConfig has no field.*margins"):
        variant(TrainConfig(), TrainConfig, margins=(0.1,))
    with pytest.raises(TypeError, match="share no configuration class"):
        variant(IndexConfig(), TrainConfig)
    with pytest.raises(TypeError, match="margn"):
        variant(TrainConfig(), TrainConfig, training={"margn": 0.1})


def test_the_shared_configuration_is_torch_free_and_outside_the_studies() -> None:
    code = ("import sys, deephash.pipeline.config, deephash.training.config; "
            "print(sorted(m for m in sys.modules if m == 'torch' or "
            "m.startswith('deephash.studies')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_the_old_import_places_still_work() -> None:
    from deephash.pipeline import evaluate, features, protocol, results, setup
    from deephash.studies import baseline, baseline_config, report, run_folder, train

    assert baseline_config.BaselineConfig is BaselineConfig
    assert baseline.load_features is features.load_features
    assert baseline.open_protocol is protocol.open_protocol
    assert report.write_results is results.write_results
    assert run_folder.write_splits is protocol.write_splits
    assert train.parse_weights is setup.parse_weights
    assert train.load_trained is evaluate.load_trained


def test_cache_location_reads_either_configuration(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_location(ExtractionConfig()) == tmp_path / "env"
    assert cache_location(ExtractionConfig(cache=False, cache_dir="x")) is None
    assert cache_location(IndexConfig(cache_dir="~/c")) == tmp_path / "home" / "c"


def test_a_reloaded_checkpoint_gives_the_trained_runs_test_figures(folder: Path,
                                                                   tmp_path: Path) -> None:
    """The pipeline alone (protocol, setup, checkpoint, test evaluation) reproduces what
    ``deephash train`` measured with the model it trained."""
    from deephash.cli import main
    from deephash.pipeline.evaluate import evaluate_checkpoint

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *tiny_run_args(folder, tmp_path / "c")]) == 0
    config = load_yaml(TrainConfig, run / "config.yaml")
    again = tmp_path / "again"
    again.mkdir()
    metrics = evaluate_checkpoint(again, config, run / "best.pt", {"note": 1})
    trained = json.loads((run / "metrics.json").read_text())
    assert metrics["note"] == 1
    for key in ("map@all", "knn_acc@1", "p@10", "triplet_acc", "n_query"):
        assert metrics[key] == pytest.approx(trained[key], abs=1e-6), key
    assert (again / "splits.json").read_bytes() == (run / "splits.json").read_bytes()
