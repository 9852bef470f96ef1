"""One distance concept: every member's operations agree with each other, the registries
name exactly the members offering their role, and an operation a member lacks is refused."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from deephash.distances import (
    MEMBERS,
    OPERATIONS,
    CosineDistance,
    Distance,
    HammingDistance,
    as_distance,
    names_offering,
    scoring_distance,
)
from deephash.errors import ConfigError
from deephash.hashing.codes import pack_codes
from deephash.metrics.verification import VERIFICATION_DISTANCES
from deephash.registries import BATCH_DISTANCES, DISTANCES


def vectors(seed: int, n: int, dim: int = 6) -> np.ndarray:
    """Float32 rows; the last one repeats the first (coinciding points)."""
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    x[-1] = x[0]
    return x


def both(operation_a: str, operation_b: str) -> list[str]:
    return [n for n in names_offering(operation_a) if n in names_offering(operation_b)]


def test_registries_name_the_members_offering_their_role() -> None:
    assert BATCH_DISTANCES.names() == sorted(names_offering("batch_matrix"))
    assert DISTANCES.names() == sorted(names_offering("evaluation_matrix"))
    # verification scores with what retrieval scores with: a --distance, or hamming for codes
    assert set(VERIFICATION_DISTANCES) == {*DISTANCES.names(), "hamming"}
    for registry in (BATCH_DISTANCES, DISTANCES):
        for name in registry.names():
            assert type(registry.create(name)) is MEMBERS[name]
    assert "hamming" in MEMBERS and "hamming" not in BATCH_DISTANCES
    assert "hamming" not in DISTANCES


@pytest.mark.parametrize("name", both("batch_matrix", "evaluation_matrix"))
def test_batch_and_evaluation_matrices_agree(name: str) -> None:
    distance = as_distance(name)
    x = torch.from_numpy(vectors(0, 12))
    batch = distance.batch_matrix(x)
    prepared = distance.prepare(x)
    evaluation = distance.evaluation_matrix(prepared, prepared)
    assert batch.shape == evaluation.shape == (12, 12) and evaluation.dtype == torch.float32
    torch.testing.assert_close(batch, evaluation, atol=2e-5, rtol=1e-5)
    assert torch.all(batch.diagonal() == 0) and batch[0, -1] == 0  # exact at coinciding points
    # the two-role entry point dispatches on its arguments
    assert torch.equal(distance.matrix(x), batch)
    assert torch.equal(distance.matrix(prepared, prepared), evaluation)


@pytest.mark.parametrize("name", both("rowwise", "evaluation_matrix"))
def test_rowwise_agrees_with_the_matrices(name: str) -> None:
    distance = as_distance(name)
    q, d = vectors(1, 5), vectors(2, 7)
    rows, cols = np.divmod(np.arange(5 * 7), 7)  # every (query, database) pair
    rowwise = distance.rowwise(q[rows], d[cols]).reshape(5, 7)
    assert rowwise.dtype == np.float64
    evaluation = distance.evaluation_matrix(distance.prepare(torch.from_numpy(q)),
                                            distance.prepare(torch.from_numpy(d)))
    np.testing.assert_allclose(rowwise, evaluation.numpy(), rtol=1e-5, atol=1e-6)
    both_sets = np.concatenate([q, d])
    np.testing.assert_allclose(distance.rowwise(both_sets, both_sets), 0.0, atol=1e-12)
    if distance.offers("batch_matrix"):
        batch = distance.batch_matrix(torch.from_numpy(both_sets))[:5, 5:]
        np.testing.assert_allclose(rowwise, batch.numpy(), rtol=1e-5, atol=2e-5)


def test_hamming_rowwise_on_signs_equals_its_packed_code_matrix() -> None:
    hamming = HammingDistance()
    rng = np.random.default_rng(3)
    # 13 bits (padding in the second byte); exact zeros count as +1, like the codes
    a = rng.integers(-2, 3, (6, 13)).astype(np.float32)
    b = rng.integers(-2, 3, (9, 13)).astype(np.float32)
    matrix = hamming.code_matrix(hamming.codes(a), hamming.codes(b))
    assert matrix.shape == (6, 9)
    rows, cols = np.divmod(np.arange(6 * 9), 9)
    rowwise = hamming.rowwise(a[rows], b[cols]).reshape(6, 9)
    assert np.array_equal(rowwise, matrix)
    brute = [[sum((s >= 0) != (t >= 0) for s, t in zip(u, v, strict=True)) for v in b] for u in a]
    assert matrix.tolist() == brute
    assert hamming.binary and not CosineDistance.binary


def _callers() -> dict[str, Callable[[Distance], object]]:
    x = torch.from_numpy(vectors(4, 5))
    codes = HammingDistance().codes(x)
    return {"batch_matrix": lambda d: d.batch_matrix(x),
            "evaluation_matrix": lambda d: d.evaluation_matrix(d.prepare(x), d.prepare(x)),
            "rowwise": lambda d: d.rowwise(x.numpy(), x.numpy()),
            "code_matrix": lambda d: d.code_matrix(d.codes(x), codes),
            "ranking_matrix": lambda d: d.ranking_matrix(x.numpy(), x.numpy())}


@pytest.mark.parametrize("name", list(MEMBERS))
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_offers_says_what_a_member_does_and_the_rest_is_refused(name: str,
                                                                operation: str) -> None:
    distance, call = as_distance(name), _callers()[operation]
    if distance.offers(operation):
        assert len(call(distance)) == 5  # type: ignore[arg-type]
    else:
        offering = ", ".join(names_offering(operation))
        with pytest.raises(ConfigError, match=f"^distance '{name}' has no .*; use one of: "
                                              f"{offering}$"):
            call(distance)


def test_names_resolve_to_members_and_models_to_their_scoring_distance() -> None:
    assert as_distance("hamming") == HammingDistance()
    cosine = CosineDistance()
    assert as_distance(cosine) is cosine
    with pytest.raises(ConfigError, match="unknown distance 'manhattan'; known: euclidean"):
        as_distance("manhattan")
    assert scoring_distance("cosine", codes=True) == HammingDistance()
    assert scoring_distance("cosine", codes=False) == cosine and cosine.normalizes
    assert not scoring_distance("euclidean", codes=False).normalizes


@pytest.mark.parametrize("name", names_offering("ranking_matrix"))
def test_ranking_matrix_refines_hamming_on_sign_codes(name: str) -> None:
    assert set(names_offering("ranking_matrix")) == set(BATCH_DISTANCES.names())
    """The re-ranking distance of relaxed outputs: the evaluation matrix where there is one,
    DTSH's -x.y/2 for neg-half-inner; on +-1 codes an increasing function of Hamming."""
    distance = as_distance(name)
    q, d = vectors(0, 3), vectors(1, 7)
    matrix = distance.ranking_matrix(q, d)
    assert matrix.shape == (3, 7) and matrix.dtype == np.float64
    if distance.offers("evaluation_matrix"):
        expected = distance.evaluation_matrix(distance.prepare(torch.from_numpy(q)),
                                              distance.prepare(torch.from_numpy(d)))
        assert np.allclose(matrix, expected.numpy(), atol=1e-6)
    else:
        assert np.allclose(matrix, -0.5 * q.astype(np.float64) @ d.T.astype(np.float64))
    signs_q, signs_d = np.where(q >= 0, 1.0, -1.0), np.where(d >= 0, 1.0, -1.0)
    hamming = HammingDistance().code_matrix(pack_codes(signs_q), pack_codes(signs_d))
    on_codes = distance.ranking_matrix(signs_q, signs_d)
    for row in range(3):
        order = np.argsort(hamming[row], kind="stable")
        assert (np.diff(on_codes[row][order]) >= -1e-9).all()
        same = hamming[row][:, None] == hamming[row][None, :]
        assert np.allclose(np.abs(on_codes[row][:, None] - on_codes[row][None, :])[same], 0,
                           atol=1e-6)
