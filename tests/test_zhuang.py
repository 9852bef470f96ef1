"""Zhuang et al.'s two steps: code inference lowers its objective; targets for learning."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deephash.hashing.zhuang import (
    _flip_gains,
    _gaps,
    bit_targets,
    infer_codes,
    sample_triplets,
    triplet_objective,
)


def test_sampled_triplets_are_valid_and_seeded() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    rng = np.random.default_rng(0)
    triplets = sample_triplets(labels, 50, rng)
    a, p, n = triplets.T
    assert (a != p).all() and (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
    assert 5 not in a  # class 2 has a single image: never an anchor
    assert set(n.tolist()) == set(range(8)) - set()  # every image serves as a negative
    again = sample_triplets(labels, 50, np.random.default_rng(0))
    assert np.array_equal(triplets, again)


def test_objective_against_a_loop() -> None:
    rng = np.random.default_rng(1)
    codes = np.where(rng.random((6, 5)) < 0.5, 1, -1).astype(np.int8)
    triplets = np.array(list(itertools.permutations(range(6), 3))[:40])
    expected = 0.0
    for a, p, n in triplets:
        d_ap = int((codes[a] != codes[p]).sum())
        d_an = int((codes[a] != codes[n]).sum())
        expected += max(0.0, 1.5 + d_ap - d_an)
    assert triplet_objective(codes, triplets, 1.5) == pytest.approx(expected)


def test_flip_gains_are_exact() -> None:
    rng = np.random.default_rng(2)
    codes = np.where(rng.random((7, 6)) < 0.5, 1, -1).astype(np.int8)
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    triplets = sample_triplets(labels, 6, rng)
    base = triplet_objective(codes, triplets, 2.0)
    gaps = _gaps(codes, triplets)
    for bit in range(6):
        gains = _flip_gains(codes, triplets, gaps, 2.0, bit, np.arange(7))
        for image in range(7):
            flipped = codes.copy()
            flipped[image, bit] *= -1
            assert gains[image] == pytest.approx(triplet_objective(flipped, triplets, 2.0) - base)


def test_code_inference_lowers_the_objective() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 40)
    codes = np.where(rng.random((200, 16)) < 0.5, 1, -1).astype(np.int8)
    triplets = sample_triplets(labels, 10, rng)
    inferred, history = infer_codes(codes, triplets, 4.0, sweeps=6, block_size=20, rng=rng)
    assert all(b <= a for a, b in itertools.pairwise(history))
    assert history[-1] < 0.5 * history[0]
    assert set(np.unique(inferred)) <= {-1, 1}
    # classes become compact: same-class codes agree on more bits than different-class
    same = np.mean([(inferred[i] == inferred[j]).mean() for i in range(0, 200, 7)
                    for j in range(0, 200, 11) if labels[i] == labels[j] and i != j])
    other = np.mean([(inferred[i] == inferred[j]).mean() for i in range(0, 200, 7)
                     for j in range(0, 200, 11) if labels[i] != labels[j]])
    assert same > other + 0.2
    assert bit_targets(inferred).unique().tolist() == [0.0, 1.0]
