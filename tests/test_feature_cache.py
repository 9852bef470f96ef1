from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from deephash.features.cache import FeatureCache, FeatureKey

KEY = FeatureKey(backbone="b", weights="file:abc", transform={"image_size": 32, "view": "identity"},
                 dataset="fp0", n_images=10, dim=3)


def rows_of(indices: np.ndarray, dim: int = 3) -> np.ndarray:
    return (indices[:, None] * np.arange(1.0, dim + 1)).astype(np.float32)


class Counter:
    def __init__(self, fail_after: int | None = None, dim: int = 3) -> None:
        self.calls: list[list[int]] = []
        self.fail_after = fail_after
        self.dim = dim

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # the user pressing Ctrl-C mid-extraction
        self.calls.append(indices.tolist())
        return rows_of(indices, self.dim)


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
    {"dim": 4}, {"version": 999}, {"precision": "bf16"},
])
def test_any_key_change_misses(tmp_path: Path, change: dict[str, object]) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    cache.get_or_compute(KEY, Counter())
    changed = dataclasses.replace(KEY, **change)
    assert changed.digest() != KEY.digest()
    assert cache.load(changed) is None
    compute = Counter(dim=changed.dim)
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
        memos = sorted(p.parent.name for p in (chosen / "fingerprints").rglob("*") if p.is_file())
        assert memos == ["fingerprints", "headers"]  # the content digest, the header check
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


def test_float32_keys_match_entries_written_before_runtimes_existed() -> None:
    """A float32 key leaves ``precision`` out, so its digest is the one computed before the
    field existed and every cached float32 entry still matches; bf16 keys carry it."""
    import hashlib
    import json

    before = {"backbone": "b", "weights": "file:abc",
              "transform": {"image_size": 32, "view": "identity"}, "dataset": "fp0",
              "n_images": 10, "dim": 3, "version": KEY.version}
    assert KEY.as_dict() == before
    assert KEY.digest() == hashlib.sha256(
        json.dumps(before, sort_keys=True).encode()).hexdigest()[:32]
    assert dataclasses.replace(KEY, precision="bf16").as_dict() == {**before, "precision": "bf16"}


class ViewCounter:
    """``compute(indices, views)`` for two views; the mirror's rows are negated."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls: list[tuple[list[int], tuple[str, ...]]] = []
        self.fail_after = fail_after

    def __call__(self, indices: np.ndarray, views: tuple[str, ...]) -> dict[str, np.ndarray]:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        self.calls.append((indices.tolist(), views))
        return {view: rows_of(indices) * (-1 if view == "hflip" else 1) for view in views}


VIEW_KEYS = {"identity": KEY,
             "hflip": dataclasses.replace(KEY, transform={"image_size": 32, "view": "hflip"})}


def test_views_are_computed_together_each_into_its_own_entry(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    compute = ViewCounter()
    out = cache.get_or_compute_views(VIEW_KEYS, compute)
    assert [views for _, views in compute.calls] == [("identity", "hflip")] * 3  # one pass
    assert np.array_equal(out["identity"], rows_of(np.arange(10)))
    assert np.array_equal(out["hflip"], -rows_of(np.arange(10)))
    assert np.array_equal(cache.load(VIEW_KEYS["hflip"]), out["hflip"])  # its own entry
    assert cache.get_or_compute(KEY, Counter()) is not None
    again = ViewCounter()
    cache.get_or_compute_views(VIEW_KEYS, again)
    assert again.calls == []


def test_only_missing_views_and_shards_are_computed(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    cache.get_or_compute(KEY, Counter())  # identity cached by an earlier run
    compute = ViewCounter(fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute_views(VIEW_KEYS, compute)
    assert compute.calls == [([0, 1, 2, 3], ("hflip",))]
    resumed: list[int] = []
    compute = ViewCounter()
    out = cache.get_or_compute_views(VIEW_KEYS, compute, on_resume=resumed.append)
    assert compute.calls == [([4, 5, 6, 7], ("hflip",)), ([8, 9], ("hflip",))]
    assert resumed == [10, 4]  # the cached identity view, then the finished hflip shard
    assert np.array_equal(out["hflip"], -rows_of(np.arange(10)))


def test_entries_are_read_memory_mapped_and_read_only(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    computed = cache.get_or_compute(KEY, Counter())
    loaded = cache.get_or_compute(KEY, Counter())
    for features in (computed, loaded):
        assert isinstance(features, np.memmap) and not features.flags.writeable
        assert np.array_equal(features, rows_of(np.arange(10)))
    with pytest.raises(ValueError, match="read-only"):
        loaded[0, 0] = 1.0


def test_rows_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    with pytest.raises(ValueError, match=r"computed \(4, 4\) features for 4 images of "
                                         "dimension 3"):
        cache.get_or_compute(KEY, Counter(dim=4))
    assert cache.load(KEY) is None
