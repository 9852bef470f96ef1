"""The training loop on small synthetic features: learning, empty batches, resume, checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deephash.losses import create_loss
from deephash.miners import MiningBatch, Triplets, create_miner
from deephash.miners.pair_negative import PairNegativeMiner
from deephash.studies.train import load_trained
from deephash.training.checkpoint import load_model, read_checkpoint, save_checkpoint
from deephash.training.config import TrainConfig, TrainingConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import build_model
from deephash.training.sampler import BalancedBatchSampler
from deephash.training.schedules import parse_schedule
from deephash.training.trainer import TrainingSetup, batch_loss, embed, fit, validate


def synthetic(seed: int = 0, n_classes: int = 4, per_class: int = 40, dim: int = 16) -> dict:
    """Noisy class clusters whose first two dimensions carry no signal."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    centres = rng.normal(size=(n_classes, dim)) * 1.2
    centres[:, :2] = 0
    x = (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32)
    order = rng.permutation(len(labels))
    val = np.sort(order[: len(labels) // 5])
    train = np.sort(order[len(labels) // 5:])
    return {"x": x, "labels": labels, "train": train, "val": val}


def make_setup(data: dict, miner: str = "semi-hard", margin: float = 0.3, epochs: int = 4,
               seed: int = 0, loss: str = "facenet") -> tuple[TrainingSetup, TrainConfig]:
    cfg = TrainingConfig(loss=loss, miner=miner, margin=margin, epochs=epochs, batch_classes=4,
                         batch_samples=6, hidden_dims=(32,), embedding_dim=8)
    config = TrainConfig(training=cfg, seed=seed)
    torch.manual_seed(seed)
    model = build_model(cfg, data["x"].shape[1], None)
    model.head.set_feature_statistics(torch.from_numpy(data["x"][data["train"]]))
    inputs = FeatureInputs(data["x"], data["x"] * -1.0, seed)  # a "mirrored" view
    criterion = create_loss(loss, margin, num_classes=int(data["labels"].max()) + 1,
                            embedding_dim=8)
    parameters = [*model.parameters(), *criterion.parameters()]
    setup = TrainingSetup(
        model=model, inputs=inputs, loss=criterion, miner=create_miner(miner, margin, seed),
        sampler=BalancedBatchSampler(data["labels"][data["train"]], 4, 6, seed),
        labels=data["labels"], train=data["train"], val=data["val"],
        optimizer=torch.optim.Adam(parameters, lr=5e-3), epochs=epochs,
        device=torch.device("cpu"), eval_distance="cosine")
    return setup, config


def saver(setup: TrainingSetup, config: TrainConfig) -> Any:
    return lambda path, extra: save_checkpoint(path, config, setup.model,
                                               loss=setup.loss.state_dict(), **extra)


def test_training_improves_validation_and_keeps_the_best(tmp_path: Path) -> None:
    data = synthetic()
    setup, config = make_setup(data, epochs=6)
    before, _ = validate(setup)
    history = fit(setup, tmp_path, saver(setup, config))
    assert len(history) == 6
    assert max(h.val_map for h in history) > before + 0.05
    assert all(h.empty_batches == 0 and 0 < h.active_fraction <= 1 for h in history)
    assert history[-1].loss < history[0].loss
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["val_map"] == max(h.val_map for h in history)
    assert best["epoch"] == int(np.argmax([h.val_map for h in history]))


def test_batches_without_triplets_are_counted_not_invented(tmp_path: Path) -> None:
    data = synthetic()
    setup, config = make_setup(data, margin=0.0, epochs=2)  # semi-hard window (d, d) is empty
    weights = [p.detach().clone() for p in setup.model.parameters()]
    history = fit(setup, tmp_path, saver(setup, config))
    assert all(h.empty_batches == len(setup.sampler) for h in history)
    assert all(np.isnan(h.loss) for h in history)  # no batch had a loss to average
    assert all(torch.equal(a, b) for a, b in zip(weights, setup.model.parameters(),
                                                 strict=True))


@pytest.mark.parametrize("loss", ["facenet", "softmax"])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path: Path, loss: str) -> None:
    data = synthetic(1)
    straight, config = make_setup(data, miner="random-hard", epochs=4, loss=loss)
    full = fit(straight, tmp_path / "a", saver(straight, config))

    first, config2 = make_setup(data, miner="random-hard", epochs=4, loss=loss)
    save = saver(first, config2)

    def save_then_die(path: Path, extra: dict[str, Any]) -> None:
        save(path, extra)
        if path.name == "last.pt" and extra["epoch"] == 1:
            raise KeyboardInterrupt  # killed after the second epoch

    with pytest.raises(KeyboardInterrupt):
        fit(first, tmp_path / "b", save_then_die)
    resumed, config3 = make_setup(data, miner="random-hard", epochs=4, loss=loss)
    state = read_checkpoint(tmp_path / "b" / "last.pt")
    load_trained(resumed, state)  # what deephash train --resume does
    history = fit(resumed, tmp_path / "b", saver(resumed, config3), resume_state=state)
    assert [h.epoch for h in history] == [0, 1, 2, 3]
    assert [h.val_map for h in history[2:]] == pytest.approx([h.val_map for h in full[2:]],
                                                             abs=1e-6)
    for ours, theirs in zip(resumed.loss.parameters(), straight.loss.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)  # the softmax class weights too


def test_softmax_training_learns_the_embedding_and_its_class_weights(tmp_path: Path) -> None:
    data = synthetic(4)
    setup, config = make_setup(data, epochs=12, loss="softmax")
    before, _ = validate(setup)
    weights = setup.loss.state_dict()["classifier.weight"].clone()
    history = fit(setup, tmp_path, saver(setup, config))
    assert max(h.val_map for h in history) > before + 0.05
    assert history[-1].active_fraction < history[0].active_fraction  # training error falls
    assert not torch.equal(weights, setup.loss.state_dict()["classifier.weight"])


def test_checkpoint_rebuilds_the_model_from_the_file_alone(tmp_path: Path) -> None:
    data = synthetic(2)
    setup, config = make_setup(data, epochs=1)
    fit(setup, tmp_path, saver(setup, config))
    loaded_config, model = load_model(tmp_path / "last.pt")
    assert loaded_config.training.embedding_dim == 8
    rows = np.arange(20)
    setup.model.load_state_dict(read_checkpoint(tmp_path / "last.pt")["model"])
    np.testing.assert_allclose(embed(model, setup.inputs, rows, torch.device("cpu")),
                               embed(setup.model, setup.inputs, rows, torch.device("cpu")),
                               atol=1e-6)


def test_schedules_and_regularizers_drive_a_hashing_run(tmp_path: Path) -> None:
    from deephash.training.schedules import parse_schedule

    data = synthetic(3)
    cfg = TrainingConfig(loss="dtsh", miner="batch-all", epochs=4, batch_classes=4,
                         batch_samples=6, hidden_dims=(32,), embedding_dim=12, normalize=False,
                         activation="tanh")
    config = TrainConfig(training=cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data["x"].shape[1], None)
    model.head.set_feature_statistics(torch.from_numpy(data["x"][data["train"]]))
    setup = TrainingSetup(
        model=model, inputs=FeatureInputs(data["x"], None, 0),
        loss=create_loss("dtsh", 1.0, "neg-half-inner"), miner=create_miner("batch-all", 1.0),
        sampler=BalancedBatchSampler(data["labels"][data["train"]], 4, 6, 0),
        labels=data["labels"], train=data["train"], val=data["val"],
        optimizer=torch.optim.Adam(model.parameters(), lr=5e-3), epochs=4,
        device=torch.device("cpu"), eval_distance="hamming",
        regularizers={"quantization": 0.1},
        schedules=dict([parse_schedule("margin=step:1:8"),
                        parse_schedule("quantization=linear:0:0.3")]))
    history = fit(setup, tmp_path, saver(setup, config))
    assert [h.margin for h in history] == [1.0, 2.0, 4.0, 8.0]
    assert history[0].regularization == 0.0 and history[-1].regularization > 0
    assert all(0 <= h.val_map <= 1 for h in history)
    codes = embed(setup.model, setup.inputs, data["val"], torch.device("cpu"))
    assert np.abs(codes).max() < 1.0  # relaxed tanh codes


def test_test_time_flip_averages_the_two_views_and_augmentation_is_optional() -> None:
    data = synthetic()
    setup, _ = make_setup(data)
    rows = np.array([3, 0, 17, 5])
    mirrored = data["x"] * -1.0
    setup.model.eval()
    with torch.no_grad():
        expected = (setup.model(torch.from_numpy(data["x"][rows]))
                    + setup.model(torch.from_numpy(mirrored[rows]))).numpy() / 2
    got = embed(setup.model, setup.inputs, rows, setup.device, batch_size=3, test_time_flip=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, embed(setup.model, setup.inputs, rows, setup.device))
    plain = FeatureInputs(data["x"], mirrored, seed=0, augment=False)
    for batch, indices in zip(plain.train_batches([rows, rows[::-1]]), [rows, rows[::-1]],
                              strict=True):
        np.testing.assert_array_equal(batch.numpy(), data["x"][indices])
    augmented = np.concatenate(list(setup.inputs.train_batches([np.arange(40)])))
    assert (augmented == mirrored[:40]).all(axis=1).any()  # augmentation does use the mirror
    with pytest.raises(ValueError, match="mirrored"):
        next(FeatureInputs(data["x"], None, 0).eval_batches(rows, 2, mirrored=True))


def test_training_samples_every_cached_view_uniformly_and_only_its_own() -> None:
    """Features whose value names their view: each training row comes from the image, its
    mirror or one of its K augmented views, uniformly; rows without augmented views draw
    from the image and mirror only; without augmented views the draws are the mirror-only
    scheme's (the same rows flipped for a seed as before views existed)."""
    from deephash.training.inputs import AugmentedFeatures

    n, k = 60, 3
    identity = np.zeros((n, 2), np.float32)
    mirror = np.full((n, 2), -1.0, np.float32)
    members = np.arange(0, n, 2)  # only even pool indices have augmented views
    views = [np.full((len(members), 2), v + 1.0, np.float32) for v in range(k)]
    inputs = FeatureInputs(identity, mirror, seed=5,
                           augmented=AugmentedFeatures(members, views))
    batches = [np.arange(n)] * 400
    values = np.stack([b[:, 0].numpy() for b in inputs.train_batches(batches)])  # (400, n)
    even, odd = values[:, members], values[:, 1::2]
    for value in (-1.0, 0.0, 1.0, 2.0, 3.0):  # 1 / (K + 2) each
        assert abs(np.mean(even == value) - 1 / (k + 2)) < 0.02, value
    assert set(np.unique(odd)) == {-1.0, 0.0} and abs(np.mean(odd == -1.0) - 0.5) < 0.03
    assert (values == values[:, :, None].max(axis=2)).all()  # every row one whole view

    plain = FeatureInputs(identity, mirror, seed=5)
    generator = torch.Generator().manual_seed(5)  # the mirror-only scheme, written out
    for batch in plain.train_batches([np.arange(n)] * 3):
        flipped = torch.rand(n, generator=generator) < 0.5
        np.testing.assert_array_equal(batch[:, 0].numpy() == -1.0, flipped.numpy())
    with pytest.raises(ValueError, match="one row per pool index"):
        AugmentedFeatures(members, [views[0][:3]])


def test_validation_every_few_epochs_and_after_the_last(tmp_path: Path) -> None:
    """``validate_every=2`` over 5 epochs validates epochs 2, 4 and 5 (the last), records
    NaN for the others, and keeps best.pt among the validated ones; validated figures
    equal those of a run that validates every epoch."""
    data = synthetic(2)
    every, config = make_setup(data, epochs=5)
    reference = fit(every, tmp_path / "a", saver(every, config))
    sparse, config = make_setup(data, epochs=5)
    sparse.validate_every = 2
    history = fit(sparse, tmp_path / "b", saver(sparse, config))
    validated = [h.epoch for h in history if not np.isnan(h.val_map)]
    assert validated == [1, 3, 4]
    assert [history[e].val_map for e in validated] == pytest.approx(
        [reference[e].val_map for e in validated], abs=1e-6)
    best = read_checkpoint(tmp_path / "b" / "best.pt")
    assert best["epoch"] in validated
    assert best["val_map"] == max(history[e].val_map for e in validated)


def test_the_trainer_mines_with_the_losss_margin_and_hands_the_tuples_to_the_loss() -> None:
    """``batch_loss``: the miner's own margin (9) is not the one training uses; it mines on
    the loss's distance matrix with the loss's margin, and the loss scores those tuples."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 8, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(6).repeat_interleave(4)
    loss = create_loss("facenet", 0.2, "euclidean")
    miner = create_miner("semi-hard", 9.0)
    out = batch_loss(loss, miner, x, labels)
    distances = loss.distance.matrix(x)
    batch = MiningBatch(distances.detach(), labels, x.detach())
    reference = loss(distances, create_miner("semi-hard", 0.2).mine(batch))
    assert out.n_items == reference.n_items > 0
    torch.testing.assert_close(out.loss, reference.loss, rtol=0, atol=0)
    assert len(miner.mine(batch)) != out.n_items  # its own margin would mine other tuples
    out.loss.backward()  # the tuples' distances stay differentiable
    assert x.grad is not None and x.grad.abs().sum() > 0


class RecordingMiner(PairNegativeMiner):
    """Semi-hard mining that records the margin each batch carries."""

    def __init__(self, margin: float) -> None:
        super().__init__(margin, "semi-hard", "nearest")
        self.seen: list[float | None] = []

    def mine(self, batch: MiningBatch) -> Triplets:
        self.seen.append(batch.margin)
        return super().mine(batch)


def test_a_margin_schedule_sets_the_one_margin_the_miner_mines_with(tmp_path: Path) -> None:
    """Scheduling sets the loss's margin only; every batch hands that value to the miner,
    whose own margin is left alone."""
    data = synthetic()
    setup, config = make_setup(data, epochs=3, margin=5.0)
    miner = RecordingMiner(5.0)
    setup.miner = miner
    setup.schedules = dict([parse_schedule("margin=linear:0.1:0.3")])
    history = fit(setup, tmp_path, saver(setup, config))
    steps = len(setup.sampler)
    assert [h.margin for h in history] == pytest.approx([0.1, 0.2, 0.3])
    assert miner.seen == pytest.approx([0.1] * steps + [0.2] * steps + [0.3] * steps)
    assert miner.margin == 5.0 and setup.loss.margin == pytest.approx(0.3)
