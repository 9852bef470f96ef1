"""Shared fixtures: tiny generated image folders, the shared CIFAR-10 mirror."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("DEEPHASH_PROGRESS", "0")

SHARED_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10"

#: why the browser tests (the report's page, the service's page) skip; the end of the run
#: counts them (pytest_terminal_summary), since only .ci/run installs Chromium
NO_CHROMIUM = "no Chromium (.ci/run installs it: apt-get install chromium)"

#: one base colour per class, so that even random features separate the classes somewhat
CLASS_COLOURS = [(220, 40, 40), (40, 200, 40), (40, 60, 220), (230, 210, 30)]


def make_image_folder(root: Path, n_classes: int = 3, n_train: int = 8, n_test: int = 3,
                      size: tuple[int, int] = (20, 16), seed: int = 0) -> Path:
    """``root/train/<class>/NN.png`` and ``root/test/...``: noisy class colours, mixed modes."""
    rng = np.random.default_rng(seed)
    for part, count in (("train", n_train), ("test", n_test)):
        for c in range(n_classes):
            folder = root / part / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(np.array(CLASS_COLOURS[c % len(CLASS_COLOURS)])
                                 + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
                image = Image.fromarray(pixels.astype(np.uint8))
                if i % 3 == 1:
                    image = image.convert("L")  # grayscale files must become RGB
                if i % 3 == 2:
                    image = image.resize((size[0] + 7, size[1] + 3))  # odd sizes
                image.save(folder / f"{i:02d}.png")
    return root


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside the terminal's own: after its
def pytest_terminal_summary(terminalreporter: Any) -> Any:  # short summary, last
    """End the run saying how many browser tests skipped for want of Chromium: ``./run
    tests`` on a fresh machine skips them, and a line among the skip reasons is easy to
    miss."""
    result = yield
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if NO_CHROMIUM in (report.longrepr[2] if isinstance(report.longrepr, tuple)
                                  else str(report.longrepr))]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} browser test(s) skipped: no Chromium; .ci/run installs it "
            "(apt-get install chromium)", yellow=True, bold=True)
    return result


@pytest.fixture(autouse=True, scope="session")
def _private_cache_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the tests' fingerprint memos and default caches out of the user's cache."""
    os.environ["DEEPHASH_CACHE"] = str(tmp_path_factory.mktemp("deephash-cache"))


@pytest.fixture
def cache_choice(request: pytest.FixtureRequest, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path, list[Path]]:
    """Parametrised by ``"--cache-dir"`` or ``"--no-cache"``: the options to pass, the
    chosen cache ``tmp_path/x``, and the default places (``HOME``, ``$DEEPHASH_CACHE``,
    pointed at empty folders) that must stay empty."""
    home, default = tmp_path / "home", tmp_path / "default-cache"
    home.mkdir()
    default.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DEEPHASH_CACHE", str(default))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))  # matplotlib's own, not ours
    chosen = tmp_path / "x"
    options = ["--cache-dir", str(chosen)] if request.param == "--cache-dir" else ["--no-cache"]
    return options, chosen, [home, default]


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three classes of 12 training and 4 test images: enough for every command."""
    return make_image_folder(tmp_path / "data", n_classes=3, n_train=12, n_test=4)


def tiny_run_args(data: Path, cache: Path, epochs: int = 2) -> list[str]:
    """Command-line options that make a training command run in about a second."""
    return ["--data-dir", str(data), "--cache-dir", str(cache), "--image-size", "32",
            "--num-workers", "0", "--tsne-points", "0", "--batch-classes", "3",
            "--batch-samples", "4", "--hidden-dims", "16", "--epochs", str(epochs),
            "--no-flip-augment"]


def headline_line(run: Path, metrics: Mapping[str, Any]) -> str:
    """The line a run ends with: its headline test figures (as in its metrics.json)."""
    m = metrics
    return (f"{run}: test mAP@all {m['map@all']:.4f}, mAP@1000 {m['map@1000']:.4f}, "
            f"kNN@1 {m['knn_acc@1']:.4f}, P@100 {m['p@100']:.4f} ({m['protocol']}, "
            f"{m['n_query']:,} queries, {m['distance']} distance)")


def last_line(caplog: pytest.LogCaptureFixture) -> str:
    """The last message deephash logged."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("deephash")][-1]


@pytest.fixture
def shared_cifar() -> Path:
    if not (SHARED_CIFAR / "train").is_dir():
        pytest.skip("the shared CIFAR-10 mirror (../shared/data/cifar10) is not present")
    return SHARED_CIFAR.resolve()


def assert_frequencies(counts: Mapping[Any, int], expected: Mapping[Any, float],
                       draws: int) -> None:
    """Observed ``counts`` of ``draws`` samples hit exactly the outcomes of ``expected``
    (outcome -> probability), each within 5 binomial standard deviations."""
    assert set(counts) == set(expected)
    for key, probability in expected.items():
        sd = np.sqrt(draws * probability * (1 - probability))
        assert abs(counts[key] - draws * probability) < 5 * sd


#: what a local client of ``deephash serve`` sends: the server's own name (any other Host
#: is refused) and the header a write needs (deephash.service.access)
LOCAL_SERVICE = {"base_url": "http://127.0.0.1:8000", "headers": {"X-Requested-With": "test"}}


def local_client(app: Any, **kwargs: Any) -> Any:
    """A FastAPI ``TestClient`` of a service ``app`` as a local, non-browser client."""
    from fastapi.testclient import TestClient

    return TestClient(app, **{**LOCAL_SERVICE, **kwargs})


def reseal(index_folder: Path) -> None:
    """Record the current SHA-256 of an index folder's files in its ``index.json``, as a
    tamperer who also edits ``index.json`` would (tests that alter a file on purpose)."""
    import json

    from deephash.service.folder import INFO, checksums, read_info

    info = read_info(index_folder)
    names = [value for key, value in info.items() if key.endswith("_file")] or \
        ["index.npz", "items.npz"]
    info["checksums"] = checksums(index_folder, names)
    (index_folder / INFO).write_text(json.dumps(info))


def tiny_training_setup(data: Path, tmp_path: Path, training: Any,
                        labels: Any = None) -> tuple[Any, Any, Any]:
    """``(setup, config, splits)``: the pipeline's training setup on the image folder
    ``data`` at 32 px, every fourth image validation (the rest train; the first four
    queries), with ``training`` (a ``TrainingConfig``) and, when given, ``labels`` in place
    of the folder's own (an ``(N, C)`` multi-hot matrix, as list files give them)."""
    import torch

    from deephash.data import Splits, open_dataset
    from deephash.pipeline.config import BackboneConfig, EvalConfig, ExtractionConfig
    from deephash.pipeline.setup import training_setup
    from deephash.training.config import TrainConfig

    dataset = open_dataset(str(data))
    if labels is not None:
        dataset.labels = labels
    pool = np.arange(len(dataset))
    splits = Splits("test", 0, train=pool[pool % 4 != 0], val=pool[pool % 4 == 0],
                    query=pool[:4], database=pool[4:])
    config = TrainConfig(
        backbone=BackboneConfig(image_size=32),
        extraction=ExtractionConfig(num_workers=0, cache_dir=str(tmp_path / "cache")),
        evaluation=EvalConfig(tsne_points=0), training=training)
    setup, _ = training_setup(config, dataset, splits, torch.device("cpu"))
    return setup, config, splits
