"""Extraction across processes: ``torchrun --nproc-per-node 2 --no-python deephash index``
and ``baseline`` (gloo) give one process's index and features byte for byte, a run whose
rank failed resumes from the finished shards to the same result, and the pieces (the
shard grid, the ranks' blocks, the thread rule) hold on their own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder, tiny_run_args

from deephash.cli import main
from deephash.devices import MAX_GPU_WORKERS, decoding_workers
from deephash.distributed import Ranks
from deephash.errors import ConfigError
from deephash.features.cache import FeatureCache, FeatureKey
from deephash.features.shards import ShardPlan, await_others, shard_size_setting
from deephash.threads import apply_thread_rule, core_share, thread_count

BIN = Path(sys.executable).parent
#: the same threads in every process: float results are reproducible to the bit only so
SETTINGS = {"DEEPHASH_THREADS": "1", "DEEPHASH_SHARD_SIZE": "4", "DEEPHASH_PROGRESS": "0"}
#: 3 classes x (8 + 3) images = 33 rows: 9 shards of 4 (the last of 1); rank 0 takes 5
N_ROWS, N_SHARDS = 33, 9


# --- the pieces --------------------------------------------------------------------------

def test_ranks_take_contiguous_blocks_that_cover_the_items_once() -> None:
    assert [Ranks(r, 3).block(7) for r in range(3)] == [range(0, 3), range(3, 5), range(5, 7)]
    assert [Ranks(r, 4).block(2) for r in range(4)] == [range(0, 1), range(1, 2),
                                                        range(2, 2), range(2, 2)]
    assert Ranks().block(5) == range(5) and Ranks(1, 2).block(0) == range(0, 0)
    for n in range(12):
        for world in range(1, 6):
            blocks = [Ranks(r, world).block(n) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_the_shard_grid_ignores_the_process_count_and_names_row_ranges() -> None:
    plan = ShardPlan(10, 4)
    assert plan.ranges == [range(0, 4), range(4, 8), range(8, 10)]
    assert [plan.numbers(Ranks(r, 2)) for r in range(2)] == [range(0, 2), range(2, 3)]
    # more ranks than shards: the last ranks compute nothing, every shard is computed once
    assert [list(plan.numbers(Ranks(r, 5))) for r in range(5)] == [[0], [1], [2], [], []]
    assert ShardPlan(0, 4).ranges == [] and ShardPlan(3, 10).ranges == [range(0, 3)]
    assert ShardPlan(8, 4).ranges == [range(0, 4), range(4, 8)]
    assert ShardPlan.name(range(4096, 8192)) == "rows-004096-008192.npy"
    assert ShardPlan.name(range(0, 12_000_000)) == "rows-000000-12000000.npy"
    with pytest.raises(ValueError):
        ShardPlan(10, 0)


def test_shard_size_and_thread_settings() -> None:
    assert shard_size_setting({}) == 4096
    assert shard_size_setting({"DEEPHASH_SHARD_SIZE": "16"}) == 16
    for bad in ("0", "-3", "many", "1.5"):
        with pytest.raises(ConfigError, match="DEEPHASH_SHARD_SIZE"):
            shard_size_setting({"DEEPHASH_SHARD_SIZE": bad})
    assert thread_count(8, {}) is None  # one process: torch's own choice
    assert thread_count(8, {"LOCAL_WORLD_SIZE": "2"}) == 4
    assert thread_count(8, {"LOCAL_WORLD_SIZE": "3"}) == 2
    assert thread_count(8, {"LOCAL_WORLD_SIZE": "16"}) == 1  # never none
    assert thread_count(8, {"LOCAL_WORLD_SIZE": "2", "DEEPHASH_THREADS": "3"}) == 3
    assert thread_count(8, {"DEEPHASH_THREADS": "5"}) == 5
    for bad in ("0", "two"):
        with pytest.raises(ConfigError, match="DEEPHASH_THREADS"):
            thread_count(8, {"DEEPHASH_THREADS": bad})
    assert core_share(16, {"LOCAL_WORLD_SIZE": "4"}) == 4


def test_the_thread_rule_sets_torch_and_bounds_gpu_decoders(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        monkeypatch.setattr("deephash.threads.usable_cores", lambda: 6)
        assert apply_thread_rule() == 3 == torch.get_num_threads()
        monkeypatch.setenv("DEEPHASH_THREADS", "1")
        assert apply_thread_rule() == 1 == torch.get_num_threads()
        monkeypatch.setattr("os.cpu_count", lambda: 16)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 GPU processes: 4 cores each
        assert decoding_workers(None, torch.device("cuda")) == 3
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        assert decoding_workers(None, torch.device("cuda")) == MAX_GPU_WORKERS
    finally:
        torch.set_num_threads(before)


def test_rank_0_hears_of_the_others_shards_as_they_appear() -> None:
    plan = ShardPlan(10, 4)
    polls = {"n": 0}
    heard: list[range] = []

    def finished(number: int) -> bool:
        polls["n"] += 1
        return number == 1 or polls["n"] > 3  # shard 1 at once, shard 2 on a later poll

    await_others(plan, {0}, finished, heard.append, poll_s=0.0)
    assert heard == [range(4, 8), range(8, 10)]
    with pytest.raises(TimeoutError, match="1 feature shards"):
        await_others(plan, {0, 1}, lambda _n: False, heard.append, poll_s=0.0, timeout_s=0.0)


def test_resumed_entries_reuse_the_named_shards_they_find(tmp_path: Path) -> None:
    """A shard left by a killed run is read, not recomputed: a marked one shows up in the
    joined matrix; a damaged one is recomputed."""
    key = FeatureKey(backbone="b", weights="w", transform={}, dataset="d", n_images=10, dim=2)
    cache = FeatureCache(tmp_path, shard_size=4)
    shards = cache.entry(key) / "shards"
    shards.mkdir(parents=True)
    np.save(shards / "rows-000004-000008.npy", np.full((4, 2), 7, np.float32))
    np.save(shards / "rows-000008-000010.npy", np.zeros((3, 2), np.float32))  # wrong shape
    asked: list[list[int]] = []

    def compute(rows: np.ndarray) -> np.ndarray:
        asked.append(rows.tolist())
        return np.repeat(rows[:, None], 2, axis=1).astype(np.float32)

    out = cache.get_or_compute(key, compute)
    assert asked == [[0, 1, 2, 3], [8, 9]]
    assert out[:, 0].tolist() == [0, 1, 2, 3, 7, 7, 7, 7, 8, 9]
    assert not shards.exists()
    assert (cache.entry(key) / "features.npy").read_bytes() == _npy_bytes(np.asarray(out))


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    return buffer.getvalue()


# --- two gloo processes against one --------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """33 images and a 1-epoch float-embedding model trained on them: (data, best.pt)."""
    tree = tmp_path_factory.mktemp("tree")
    data = make_image_folder(tree / "data", n_classes=3, n_train=8, n_test=3)
    assert main(["train", "--out", str(tree / "run"), "--embedding-dim", "8",
                 *tiny_run_args(data, tree / "c", epochs=1)]) == 0
    return data, tree / "run" / "best.pt"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """:data:`SETTINGS` in this process and the launched ones; torch's threads restored."""
    before = torch.get_num_threads()
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    yield
    torch.set_num_threads(before)


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2",
                           "--no-python", str(BIN / "deephash"), *args],
                          env={**os.environ, **SETTINGS}, capture_output=True, text=True,
                          timeout=300)


def entry_files(cache: Path) -> dict[str, bytes]:
    """``{digest: features.npy bytes}`` of a cache."""
    return {p.parent.name: p.read_bytes() for p in (cache / "features").glob("*/features.npy")}


def index_arrays(folder: Path) -> dict[str, bytes]:
    """Every array of an index folder's ``.npz`` files, as dtype, shape and bytes (the zip
    archives themselves carry write times)."""
    out = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                value = archive[name]
                out[f"{path.name}:{name}"] = (str(value.dtype).encode()
                                              + str(value.shape).encode() + value.tobytes())
    return out


def test_two_processes_index_as_one_byte_for_byte(
        model: tuple[Path, Path], tmp_path: Path, settings: None) -> None:
    """Rank 0 and rank 1 extract the two blocks of shards into one cache; rank 0 alone
    writes the index folder, equal to one process's array for array, bit for bit."""
    data, checkpoint = model

    def index(name: str) -> list[str]:
        return ["index", "--checkpoint", str(checkpoint), "--data-dir", str(data),
                "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / f"cache-{name}")]

    assert main(index("one")) == 0
    done = torchrun(*index("two"))
    assert done.returncode == 0, done.stderr[-6000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert index_arrays(two) == index_arrays(one) and len(index_arrays(one)) >= 2
    assert json.loads((two / "index.json").read_text())["n_items"] == N_ROWS
    assert entry_files(tmp_path / "cache-two") == entry_files(tmp_path / "cache-one")
    assert not list((tmp_path / "cache-two" / "features").glob("*/shards"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # rank 1 wrote no folder of its own
        "cache-one", "cache-two", "one", "two"]


def test_a_failed_rank_resumes_to_one_process_baseline(
        model: tuple[Path, Path], tmp_path: Path, settings: None) -> None:
    """``baseline`` on 2 ranks where rank 1 cannot write its third shard (a folder stands
    where the file goes): the run fails, keeping the finished shards (rank 1's first two
    at least). The rerun (``--overwrite``: the failed run left its run folder) reuses
    every one of them, computes the rest and ends with one process's features, byte for
    byte, and the same figures."""
    data = model[0]

    def baseline(name: str) -> list[str]:
        return ["baseline", "--data-dir", str(data), "--cache-dir", str(tmp_path / f"c-{name}"),
                "--image-size", "32", "--tsne-points", "0", "--num-workers", "0",
                "--out", str(tmp_path / name)]

    assert main(baseline("one")) == 0
    (digest, reference), = entry_files(tmp_path / "c-one").items()
    shards = tmp_path / "c-two" / "features" / digest / "shards"
    blocker = shards / ShardPlan.name(range(28, 32))  # rank 1 has shards 5-8 (rows 20-33)
    blocker.mkdir(parents=True)
    failed = torchrun(*baseline("two"))
    assert failed.returncode != 0
    shutil.rmtree(blocker)
    left = sorted(p.name for p in shards.glob("rows-*.npy"))
    assert {"rows-000020-000024.npy", "rows-000024-000028.npy"} <= set(left)
    done = torchrun(*baseline("two"), "--overwrite")  # the failed run's folder
    assert done.returncode == 0, done.stderr[-6000:]
    reused = re.search(r"(\d+) of (\d+) shards finished by an earlier run are reused",
                       done.stderr)
    assert reused is not None and reused.groups() == (str(len(left)), str(N_SHARDS))
    assert entry_files(tmp_path / "c-two") == {digest: reference}
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text())
                for name in ("one", "two"))
    assert two["map@all"] == one["map@all"] and two["val_map@all"] == one["val_map@all"]
