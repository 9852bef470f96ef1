"""The index protocol: our exact Hamming index and faiss's give identical results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deephash.errors import ConfigError
from deephash.hashing.codes import hamming_matrix
from deephash.index import create_index, load_index


def codes(n: int, bits: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.packbits(rng.random((n, bits)) < 0.5, axis=1)


def exact(queries: np.ndarray, database: np.ndarray, k: int,
          bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: sort every row by (distance, position); with ``bits``, distances count
    only the first ``bits`` unpacked bits (padding ignored)."""
    if bits is None:
        d = hamming_matrix(queries, database)
    else:
        q, b = (np.unpackbits(c, axis=1, count=bits) for c in (queries, database))
        d = (q[:, None, :] != b[None, :, :]).sum(axis=2)
    order = np.lexsort((np.broadcast_to(np.arange(d.shape[1]), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.mark.parametrize("bits", [8, 12, 16, 20, 24, 48, 64])
def test_ours_and_faiss_flat_are_identical_and_exact(bits: int) -> None:
    database, queries = codes(500, bits, 0), codes(40, bits, 1)
    expected_d, expected_i = exact(queries, database, 10, bits)
    for factory in ("BFlat-numpy", "BFlat"):
        index = create_index(factory, bits)
        index.add(database[:200])
        index.add(database[200:])
        assert index.ntotal == 500
        result = index.search(queries, 10)
        assert np.array_equal(result.distances, expected_d), factory
        assert np.array_equal(result.ids, expected_i), factory  # ties in insertion order


def test_custom_ids_padding_and_bad_input() -> None:
    index = create_index("BFlat-numpy", 12)
    index.add(codes(3, 12, 0), ids=np.array([70, 80, 90]))
    result = index.search(codes(2, 12, 1), 5)
    assert result.ids.shape == (2, 5) and set(result.ids[:, :3].ravel()) <= {70, 80, 90}
    assert (result.ids[:, 3:] == -1).all()
    with pytest.raises(ConfigError, match=r"packed uint8 codes of shape \(n, 2\)"):
        index.search(np.zeros((1, 3), dtype=np.uint8), 1)
    with pytest.raises(ConfigError, match=r"BMIH3: 12 bits \(padded to 16\) must split"):
        create_index("BMIH3", 12)
    with pytest.raises(ConfigError, match="unknown index"):
        create_index("IVF", 8)


@pytest.mark.parametrize("factory", ["BHNSW16", "BMIH4"])
def test_sub_linear_indexes_find_most_true_neighbours(factory: str) -> None:
    rng = np.random.default_rng(0)
    centres = rng.random((20, 32)) < 0.5
    flips = rng.random((2000, 32)) < 0.08
    database = np.packbits(centres[rng.integers(0, 20, 2000)] ^ flips, axis=1)
    queries = database[:100]
    index = create_index(factory, 32)
    index.add(database)
    result = index.search(queries, 10)
    truth_d, _ = exact(queries, database, 10)
    # recall of the true k-th neighbour distance: returned distances match the exact ones
    assert np.mean(result.distances == truth_d) > 0.8


@pytest.mark.parametrize("bits", [12, 20])
@pytest.mark.parametrize("factory", ["BFlat-numpy", "BFlat", "BHNSW16", "BMIH2"])
def test_padding_bits_never_count(bits: int, factory: str) -> None:
    """Codes whose unused low bits of the last byte are set search like the clean ones
    (ties included), and the caller's array is left as it was."""
    database, queries = codes(300, bits, 2), codes(20, bits, 3)
    if factory == "BMIH2" and bits == 20:
        factory = "BMIH3"  # 24 padded bits: 3 tables of 8
    dirty_db, dirty_q = database.copy(), queries.copy()
    dirty_db[:, -1] |= 0xFF >> (bits % 8)  # every padding bit set
    dirty_q[::2, -1] |= 1
    kept = dirty_db.copy()
    index = create_index(factory, bits)
    index.add(dirty_db)
    assert np.array_equal(dirty_db, kept)
    result = index.search(dirty_q, 10)
    truth_d, truth_i = exact(queries, database, 10, bits)
    if factory in ("BFlat-numpy", "BFlat"):
        assert np.array_equal(result.distances, truth_d)
        assert np.array_equal(result.ids, truth_i)
    else:  # approximate: the returned distances are mostly the true ones, never below them
        assert np.mean(result.distances == truth_d) > 0.8
        assert (result.distances[:, 0] >= truth_d[:, 0]).all()
        assert result.distances.max() <= bits


@pytest.mark.parametrize("bits", [12, 16])
@pytest.mark.parametrize("factory", ["BFlat-numpy", "BFlat", "BHNSW8", "BMIH2"])
def test_save_and_load(tmp_path: Path, factory: str, bits: int) -> None:
    index = create_index(factory, bits)
    index.add(codes(100, bits, 0), ids=np.arange(100) * 3)
    index.save(tmp_path / "i.npz")
    loaded = load_index(tmp_path / "i.npz")
    queries = codes(7, bits, 1)
    assert loaded.ntotal == 100 and type(loaded) is type(index) and loaded.dim == bits
    a, b = index.search(queries, 5), loaded.search(queries, 5)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.distances, b.distances)


def test_float_index_is_exact() -> None:
    rng = np.random.default_rng(0)
    database = rng.normal(size=(300, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    index = create_index("Flat", 8)
    index.add(database)
    result = index.search(queries, 4)
    squared = ((queries[:, None, :] - database[None, :, :]) ** 2).sum(2)
    assert np.array_equal(result.ids, np.argsort(squared, axis=1)[:, :4])
    np.testing.assert_allclose(result.distances, np.sort(squared, axis=1)[:, :4], rtol=1e-4)
