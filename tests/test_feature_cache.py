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


@pytest.mark.parametrize("cache_choice", ["--cache-dir", "--no-cache"], indirect=True)
def test_baseline_writes_no_cache_outside_the_chosen_one(
        tmp_path: Path, cache_choice: tuple[list[str], Path, list[Path]]) -> None:
    """The features and the data's fingerprint memo go under --cache-dir X; with
    --no-cache nowhere: $DEEPHASH_CACHE and ~/.cache stay empty."""
    from conftest import make_image_folder

    from deephash.cli import main

    options, chosen, defaults = cache_choice
    data = make_image_folder(tmp_path / "data")
    assert main(["baseline", "--data-dir", str(data), "--out", str(tmp_path / "run"),
                 "--image-size", "32", "--num-workers", "0", "--tsne-points", "0",
                 *options]) == 0
    assert all(list(folder.iterdir()) == [] for folder in defaults)
    if "--cache-dir" in options:
        assert len(list((chosen / "fingerprints").iterdir())) == 1
        assert len(list(chosen.iterdir())) > 1  # the features beside it
    else:
        assert not chosen.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data", "home", "default-cache", "run", *(["x"] if chosen.exists() else [])]
        + (["mpl"] if (tmp_path / "mpl").exists() else []))


def test_the_fingerprint_memo_is_written_only_where_asked(tmp_path: Path) -> None:
    from conftest import make_image_folder

    from deephash.data import open_dataset
    from deephash.data.fingerprint import memo_location

    data = make_image_folder(tmp_path / "data")
    assert memo_location(None) is None
    plain = open_dataset(str(data)).fingerprint()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    memo = memo_location(tmp_path / "cache")
    assert open_dataset(str(data), fingerprint_memo=memo).fingerprint() == plain
    assert memo == tmp_path / "cache" / "fingerprints" and len(list(memo.iterdir())) == 1
