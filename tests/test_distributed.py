"""Training across processes (torchrun, DDP, gloo on the CPU) equals one process's
training on the same global batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deephash.distributed import (
    ONE_PROCESS,
    GlobalBatchNorm1d,
    Ranks,
    gather_batch,
    gather_rows,
    globalise_batch_norm,
)
from tests.distributed_worker import make_setup, train

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ranks_share_rows_disjointly_and_completely() -> None:
    rows = np.arange(12)
    shares = [Ranks(r, 3).take(rows) for r in range(3)]
    assert sorted(np.concatenate(shares).tolist()) == rows.tolist()
    assert shares[1].tolist() == [1, 4, 7, 10]
    assert ONE_PROCESS.take(rows) is rows
    assert [n for n in range(7) if Ranks(2, 3).owns(n)] == [2, 5]
    # one process: gathering is the identity
    x = torch.randn(5, 3, requires_grad=True)
    assert gather_batch(x) is x
    assert gather_rows(rows, 12) is rows


def test_global_batch_norm_is_batch_norm_in_one_process_and_keeps_its_tensors() -> None:
    head = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))
    weight = head[1].weight
    globalise_batch_norm(head)
    assert type(head[1]) is GlobalBatchNorm1d and head[1].weight is weight
    reference = torch.nn.BatchNorm1d(6)
    reference.load_state_dict(head[1].state_dict())
    x = torch.randn(10, 6)
    torch.testing.assert_close(head[1](x), reference(x))
    torch.testing.assert_close(head[1].running_var, reference.running_var)


def launch(case: str, out: Path, world: int = 2, mode: str = "") -> list[dict]:
    """``world`` worker processes joined as torchrun would join them; their results (none
    when ``mode`` kills them)."""
    port = free_port()
    processes = []
    for rank in range(world):
        env = {**os.environ, "WORLD_SIZE": str(world), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen(
            [sys.executable, str(HERE / "distributed_worker.py"), case, str(out), mode],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    if mode == "die-after-epoch-0":
        assert processes[0].wait(timeout=300) == 3
        for process in processes[1:]:  # left waiting for rank 0 at a collective, or failed
            process.kill()
            process.wait()
        return []
    logs = [p.communicate(timeout=300)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), "\n".join(logs)
    return [torch.load(f"{out}.rank{rank}.pt", weights_only=False) for rank in range(world)]


@pytest.mark.parametrize("case", ["facenet", "softmax"])
def test_two_ranks_train_as_one_process_on_the_same_global_batches(
        tmp_path: Path, case: str) -> None:
    """Two epochs of three steps (P x K = 24 images shared 12 + 12) on 2 gloo ranks give
    the parameters of one process on the 24 images, on both ranks: the gathered batch
    feeds the miner, the local rows' gradients are scaled to the global loss's, the head's
    BatchNorm uses the global statistics, and the loss's own parameters (softmax class
    weights) are not double-counted. Validation embeddings split between the ranks give
    the same history."""
    alone = train(case, tmp_path)
    assert alone["world"] == 1
    ranks = launch(case, tmp_path / "out")
    for result in ranks:
        assert result["world"] == 2
        for part in ("model", "loss"):
            assert result[part].keys() == alone[part].keys()
            for name, value in alone[part].items():
                torch.testing.assert_close(result[part][name], value, rtol=1e-4, atol=1e-5,
                                           msg=f"{part}.{name}")
        np.testing.assert_allclose(result["history"], alone["history"], rtol=1e-4, atol=1e-5)
    moved = [not torch.equal(v, w) for v, w in zip(
        alone["model"].values(), make_setup(case).model.state_dict().values(), strict=True)
        if v.is_floating_point()]
    assert any(moved)  # the steps did train


def test_a_killed_two_rank_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """Rank 0 dies right after epoch 0's last.pt (the other rank is killed); two new
    ranks resume from it and end with one uninterrupted process's parameters: the
    optimizer, the LR schedule, the sampler, the miner's and the inputs' generators
    continue where they stopped."""
    (tmp_path / "alone").mkdir()
    (tmp_path / "ranks").mkdir()
    alone = train("facenet", tmp_path / "alone")
    assert launch("facenet", tmp_path / "ranks" / "out", mode="die-after-epoch-0") == []
    assert torch.load(tmp_path / "ranks" / "last.pt", weights_only=False)["epoch"] == 0
    for result in launch("facenet", tmp_path / "ranks" / "out", mode="resume"):
        for name, value in alone["model"].items():
            torch.testing.assert_close(result["model"][name], value, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result["history"], alone["history"], rtol=1e-4, atol=1e-5)


def test_ranks_share_the_feature_cache_shards(tmp_path: Path) -> None:
    """The 3 shards of a 10-row cache entry go to the 2 ranks in contiguous blocks (rank 0
    the first two, rank 1 the last), each computed once; rank 0 joins them and every rank
    reads the whole entry."""
    shares = launch("cache", tmp_path / "out")
    assert [r["computed"] for r in shares] == [[[0, 1, 2, 3], [4, 5, 6, 7]], [[8, 9]]]
    for result in shares:
        np.testing.assert_array_equal(result["features"][:, 0], np.arange(10))
        assert not result["shards_left"]


def torchrun(*args: str, world: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPHASH_PROGRESS": "0"}
    return subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node",
                           str(world), "--no-python", str(BIN / "deephash"), *args],
                          env=env, capture_output=True, text=True, timeout=600)


def test_torchrun_train_matches_one_process_and_resumes(folder: Path, tmp_path: Path) -> None:
    """``torchrun --nproc-per-node 2 --no-python deephash train`` in partial mode: the
    same test figures as one process, rank 0 alone writes, and ``--resume`` (train one
    epoch, then continue to two) ends as it does in one process."""
    from deephash.cli import main

    cache = tmp_path / "cache"
    common = ["--data-dir", str(folder), "--cache-dir", str(cache), "--image-size", "32",
              "--tsne-points", "0", "--batch-classes", "3", "--batch-samples", "4",
              "--embedding-dim", "16", "--hidden-dims", "32", "--mode", "partial",
              "--trainable-blocks", "1", "--miner", "batch-hard", "--batches-per-epoch", "3"]
    done = torchrun("train", *common, "--epochs", "2", "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]  # extracted by the two ranks
    entries = sorted(p.name for p in (cache / "features").iterdir())
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "one")]) == 0
    assert sorted(p.name for p in (cache / "features").iterdir()) == entries  # reused
    one, two = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("one", "two"))
    for key in ("map@all", "knn_acc@1", "val_map@all"):
        assert two[key] == pytest.approx(one[key], abs=1e-4), key
    run_info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_info["state"] == "finished" and done.stderr.count("epoch 2/2") == 1  # rank 0
    for epochs, extra in (("1", ()), ("2", ("--resume",))):
        assert main(["train", *common, "--epochs", epochs, *extra, "--out",
                     str(tmp_path / "one-resumed")]) == 0
        done = torchrun("train", *common, "--epochs", epochs, *extra, "--out",
                        str(tmp_path / "two-resumed"))
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / r / "metrics.json").read_text())
                for r in ("one-resumed", "two-resumed"))
    assert two["map@all"] == pytest.approx(one["map@all"], abs=1e-4)
    history = json.loads((tmp_path / "two-resumed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]


def test_torchrun_refuses_what_it_cannot_share(folder: Path, tmp_path: Path) -> None:
    """A batch the ranks cannot split evenly, and commands that run in one process only,
    get a one-line error."""
    common = ["--data-dir", str(folder), "--cache-dir", str(tmp_path / "cache"),
              "--image-size", "32", "--batch-classes", "3", "--batch-samples", "3"]
    done = torchrun("train", *common, "--out", str(tmp_path / "odd"))
    assert done.returncode != 0
    assert "cannot be shared by 2 processes" in done.stderr
    assert not (tmp_path / "odd").exists()
    done = torchrun("search", str(tmp_path / "query.png"), "--index", str(tmp_path / "i"))
    assert done.returncode != 0 and "search runs in one process" in done.stderr
    assert "only train, hash, index, baseline do" in done.stderr
