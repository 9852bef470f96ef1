"""The head's input standardisation: dead and near-constant feature dimensions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deephash.training.head import DEAD_STD, STD_FLOOR, EmbeddingHead, feature_statistics
from deephash.training.inputs import FeatureInputs
from deephash.training.trainer import fit, validate
from tests.test_trainer import make_setup, synthetic


def with_dead_dimensions(n: int = 200, dim: int = 12, dead: int = 4, seed: int = 0
                         ) -> torch.Tensor:
    """``(n, dim)`` features whose first ``dead`` dimensions are 0 on every row."""
    x = torch.from_numpy(np.random.default_rng(seed).normal(1.0, 0.5, (n, dim)))
    x[:, :dead] = 0
    return x.float()


def test_healthy_features_are_standardised_as_before() -> None:
    x = with_dead_dimensions(dead=0)
    mean, std = feature_statistics(x)
    assert torch.equal(mean, x.mean(0)) and torch.equal(std, x.std(0))  # bit for bit


def test_a_dead_dimension_is_ignored_wherever_it_wakes_up() -> None:
    x = with_dead_dimensions(dead=4)
    _, std = feature_statistics(x)
    assert torch.isinf(std[:4]).all() and torch.isfinite(std[4:]).all()
    head = EmbeddingHead(12, (16,), 8)
    head.set_feature_statistics(x)
    head.eval()
    query = x[:5].clone()
    woken = query.clone()
    woken[:, :4] = 1.7  # e.g. a mirrored view or a query lights a dimension dead in training
    with torch.no_grad():
        torch.testing.assert_close(head(woken), head(query))
        assert torch.isfinite(head(woken)).all()


def test_a_near_constant_dimension_is_amplified_at_most_ten_times_a_typical_one() -> None:
    x = with_dead_dimensions(dead=0)
    x[:, 0] = 1.0
    x[0, 0] = 1.0 + 1e-4  # one tiny deviation: std ~ 7e-6, far below the others' ~0.5
    _, std = feature_statistics(x)
    typical = x.double().std(0).median()  # of the live dimensions: all 12 here
    assert std[0] == pytest.approx(STD_FLOOR * float(typical), rel=1e-5)
    assert torch.isfinite(std[0]) and std[0] > DEAD_STD
    # a deviation of one typical std in that dimension becomes at most 1 / STD_FLOOR
    assert float(typical / std[0]) == pytest.approx(1 / STD_FLOOR, rel=1e-5)


def test_all_dimensions_dead_gives_zero_inputs_not_nan() -> None:
    mean, std = feature_statistics(torch.zeros(10, 3))
    assert torch.isinf(std).all()
    head = EmbeddingHead(3, (4,), 2, normalize=False).eval()
    head.feature_mean.copy_(mean)
    head.feature_std.copy_(std)
    with torch.no_grad():
        assert torch.isfinite(head(torch.ones(2, 3))).all()


def test_mirrored_views_that_light_dead_dimensions_no_longer_wreck_training(
        tmp_path: Path) -> None:
    """The issue's case in miniature: the training features have dead dimensions that a
    mirrored view lights up. With the old statistics (std clamped at 1e-6) flip augmentation
    fed the head values of ~1e6 and validation fell; now it matches training without it."""
    data = synthetic(per_class=40, dim=16)
    data["x"][:, :4] = 0  # dead on every image's own view
    rng = np.random.default_rng(1)
    mirrored = data["x"] + rng.normal(0, 0.1, data["x"].shape).astype(np.float32)
    mirrored[:, :4] = rng.uniform(0, 2, (len(mirrored), 4))

    def trained(augment: bool, old_statistics: bool) -> float:
        setup, _ = make_setup(data, epochs=6)
        setup.inputs = FeatureInputs(data["x"], mirrored.astype(np.float32), seed=0,
                                     augment=augment)
        if old_statistics:
            x = torch.from_numpy(data["x"][data["train"]])
            setup.model.head.feature_std.copy_(x.std(0).clamp_min(1e-6))
        fit(setup, tmp_path, lambda path, extra: None)
        return validate(setup)[0]

    plain = trained(augment=False, old_statistics=False)
    augmented = trained(augment=True, old_statistics=False)
    wrecked = trained(augment=True, old_statistics=True)
    assert augmented > plain - 0.05
    assert wrecked < augmented - 0.1  # the sensitivity of this test: the old bug shows



def test_checkpoints_with_a_bias_before_batch_norm_load_to_the_same_function() -> None:
    """Heads once had a bias in each hidden Linear (BatchNorm subtracts it in training);
    such a checkpoint loads into today's bias-free head, the bias folded into BatchNorm's
    running mean, and the head computes what the old one did."""
    import copy

    torch.manual_seed(0)
    head = EmbeddingHead(6, (5,), 3).eval()
    old = copy.deepcopy(head)
    linear = old.layers[0]
    old.layers[0] = torch.nn.Linear(6, 5)
    old.layers[0].weight.data.copy_(linear.weight)
    old.layers[0].bias.data.copy_(torch.randn(5))
    old.layers[1].running_mean.copy_(torch.randn(5))
    state = old.state_dict()
    assert "layers.0.bias" in state and "layers.0.bias" not in head.state_dict()
    head.load_state_dict(state)
    x = torch.randn(7, 6)
    torch.testing.assert_close(head(x), old(x))
