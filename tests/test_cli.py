"""``deephash baseline`` end to end on tiny generated image folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import headline_line, last_line

from deephash.backbones import BACKBONES
from deephash.cli import main
from deephash.data import Splits
from deephash.metrics import EvaluationSpec, evaluate_retrieval
from deephash.miners import MINERS
from deephash.registries import LISTABLE

FLAT_KEYS = ("knn_acc@1", "knn_acc@10", "map@all", "map@1000", "p@10", "p@100")


def baseline(data: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["baseline", "--data-dir", str(data), "--out", str(out), "--cache-dir",
                 str(cache), "--image-size", "32", "--batch-size", "16", "--num-workers", "0",
                 "--tsne-points", "30", *extra])


def test_baseline_writes_the_run_folder(folder: Path, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert baseline(folder, run, tmp_path / "cache") == 0
    for name in ("config.yaml", "run.json", "splits.json", "metrics.json", "tsne.png",
                 "pr_curve.json", "pr_curve.png", "embeddings/query.npz",
                 "embeddings/database.npz"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distance"] == "cosine"
    for key in FLAT_KEYS:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["knn_acc@1"] > 0.5  # class colours are easy for ImageNet features
    assert last_line(caplog) == headline_line(run, metrics)  # one readable line, no dict
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["backbone"]["image_size"] == 32 and config["data"]["protocol"] == "auto"
    splits = Splits.from_json(run / "splits.json")
    assert splits.protocol == "cifar10" and metrics["protocol"] == "cifar10"  # auto's choice
    assert splits.sizes() == {"train": 33, "val": 3, "query": 12, "database": 36}

    # the saved vectors are exactly what was ranked: the metrics can be recomputed
    query, database = (np.load(run / "embeddings" / f"{n}.npz") for n in ("query", "database"))
    assert query["x"].dtype == np.float32 and query["y"].dtype == np.int64
    assert np.array_equal(query["index"], splits.query)
    again = evaluate_retrieval(query["x"], database["x"], query["y"], database["y"],
                               metrics["distance"], EvaluationSpec(map_cutoffs=(1000,)))
    for key in FLAT_KEYS:
        assert again.metrics[key] == pytest.approx(metrics[key]), key


def test_second_run_reads_the_cache(folder: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert baseline(folder, tmp_path / "a", tmp_path / "cache") == 0
    import deephash.features as features

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(features, "extract_views", no_extraction)
    assert baseline(folder, tmp_path / "b", tmp_path / "cache", "--seed", "3") == 0
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["n_query"] == first["n_query"]


def test_config_file_is_reusable(folder: Path, tmp_path: Path) -> None:
    assert baseline(folder, tmp_path / "a", tmp_path / "cache", "--distance", "euclidean") == 0
    assert main(["baseline", "--config", str(tmp_path / "a" / "config.yaml"), "--out",
                 str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("a", "b"))
    assert a == b and b["distance"] == "euclidean"


def test_corrupt_image_is_named_by_the_cli(folder: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "train" / "class1" / "05.png").write_bytes(b"broken")
    assert baseline(folder, tmp_path / "r", tmp_path / "cache") == 2
    assert "class1/05.png" in capsys.readouterr().err


def test_list_registries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "backbones"]) == 0
    assert capsys.readouterr().out.split() == BACKBONES.names()
    assert main(["list", "miners"]) == 0
    assert capsys.readouterr().out.split() == MINERS.names()
    assert main(["list"]) == 0  # every kind, one line each
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(LISTABLE)
    assert ("losses: contrastive, csq, dpsh, dsh, dtsh, facenet, greedyhash, hashnet, hoffer, "
            "orthohash, softmax") in lines


STARTUP = """
import contextlib, io, sys
from deephash.cli import main
for argv in ({argvs}):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
heavy = sorted(m for m in ("torch", "torchvision", "numpy", "faiss", "timm", "sklearn")
               if m in sys.modules)
print(",".join(heavy))
"""


def test_help_and_list_import_no_torch() -> None:
    """``deephash --help``, a subcommand's ``--help`` and ``deephash list`` stay fast: they
    import none of the heavy libraries (torch alone takes seconds)."""
    argvs = [["--help"], ["train", "--help"], ["hash", "--help"], ["list", "miners"], ["list"]]
    code = STARTUP.format(argvs=", ".join(repr(a) for a in argvs))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == ""
