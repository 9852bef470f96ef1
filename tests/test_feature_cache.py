from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from deephash.features.cache import FeatureCache, FeatureKey

KEY = FeatureKey(backbone="b", weights="file:abc", transform={"image_size": 32, "view": "identity"},
                 dataset="fp0", n_images=10, dim=3)


def rows_of(indices: np.ndarray) -> np.ndarray:
    return np.stack([indices * 1.0, indices * 2.0, indices * 3.0], axis=1).astype(np.float32)


class Counter:
    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail_after = fail_after

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # the user pressing Ctrl-C mid-extraction
        self.calls.append(indices.tolist())
        return rows_of(indices)


def test_second_call_reads_the_cache(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    compute = Counter()
    first = cache.get_or_compute(KEY, compute)
    assert np.array_equal(first, rows_of(np.arange(10)))
    assert len(compute.calls) == 3
    again = Counter()
    assert np.array_equal(cache.get_or_compute(KEY, again), first)
    assert again.calls == []
    assert not (cache.entry(KEY) / "shards").exists()


@pytest.mark.parametrize("change", [
    {"backbone": "other"}, {"weights": "file:def"},
    {"transform": {"image_size": 64, "view": "identity"}},
    {"transform": {"image_size": 32, "view": "hflip"}}, {"dataset": "fp1"}, {"n_images": 11},
    {"dim": 4}, {"version": 999},
])
def test_any_key_change_misses(tmp_path: Path, change: dict[str, object]) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    cache.get_or_compute(KEY, Counter())
    changed = dataclasses.replace(KEY, **change)
    assert changed.digest() != KEY.digest()
    assert cache.load(changed) is None
    compute = Counter()
    cache.get_or_compute(changed, compute)
    assert compute.calls  # recomputed


def test_interrupted_run_resumes_and_never_reads_as_valid(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(KEY, Counter(fail_after=2))
    assert cache.load(KEY) is None
    assert not (cache.entry(KEY) / "features.npy").exists()
    resumed: list[int] = []
    compute = Counter()
    out = cache.get_or_compute(KEY, compute, on_resume=resumed.append)
    assert compute.calls == [[8, 9]]  # only the shard that was never finished
    assert resumed == [4, 4]
    assert np.array_equal(out, rows_of(np.arange(10)))


def test_damaged_entries_are_not_trusted(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    cache.get_or_compute(KEY, Counter())
    path = cache.entry(KEY) / "features.npy"
    path.write_bytes(path.read_bytes()[:60])  # truncated by a crash of something else
    assert cache.load(KEY) is None
    cache.get_or_compute(KEY, Counter())
    key_file = cache.entry(KEY) / "key.json"
    key_file.write_text(key_file.read_text().replace("fp0", "fpX"))  # digest collision
    assert cache.load(KEY) is None


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    cache.get_or_compute(KEY, Counter())
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
