"""Packed data sets: ``deephash pack`` writes one file that reads back as its folder did
(classes, order, pixels, splits, fingerprint and so cached features); damaged packs stop
with one line."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder
from PIL import Image
from test_cifar10_official import write_release
from test_cifar_mirror import slice_of
from test_cli import baseline

from deephash.cli import main
from deephash.data import make_splits, open_dataset
from deephash.data import packed as packed_module
from deephash.data.packed import MAGIC, PackedDataset, is_pack, write_pack
from deephash.errors import ConfigError, DataError


def _jpeg(pixels: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """PNGs in RGB, grayscale and odd sizes, plus colour, grayscale and progressive JPEGs."""
    root = make_image_folder(tmp_path / "data", n_classes=3, n_train=6, n_test=3)
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    (root / "train" / "class0" / "j0.jpg").write_bytes(_jpeg(photo, quality=90))
    (root / "train" / "class1" / "j1.jpg").write_bytes(_jpeg(photo[..., 0]))  # grayscale
    (root / "test" / "class2" / "j2.jpeg").write_bytes(_jpeg(photo[:9], progressive=True,
                                                             subsampling=0))
    return root


def _pack(folder: Path, path: Path) -> PackedDataset:
    write_pack(open_dataset(str(folder)), path)
    opened = open_dataset(str(path))
    assert isinstance(opened, PackedDataset)
    return opened


@pytest.mark.parametrize("in_memory", [True, False])
def test_pack_reads_back_as_its_folder(mixed: Path, tmp_path: Path, in_memory: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not in_memory:  # every image counts as large: decoded per call from the file
        monkeypatch.setattr(packed_module, "SMALL_SIDE", 8)
    folder = open_dataset(str(mixed))
    pack = _pack(mixed, tmp_path / "data.pack")
    assert pack.preload() is in_memory
    assert pack.classes == folder.classes
    assert pack.labels == folder.labels
    assert pack.is_test.tolist() == folder.is_test.tolist()
    assert pack.names == folder.data_files()[1]
    assert {Path(name).suffix for name in pack.names} == {".png", ".jpg", ".jpeg"}
    for i in range(len(folder)):
        expected = folder.load_pixels(i)
        assert np.array_equal(pack.load_pixels(i), expected), folder.describe(i)
        image = pack.load_image(i)
        assert image.mode == "RGB" and np.array_equal(np.array(image), expected)
    assert pack.describe(4) == f"{tmp_path / 'data.pack'}:{folder.data_files()[1][4]}"
    pixels = pack.load_pixels(0)
    pixels[:] = 0  # a caller's copy: the pack keeps its pixels
    assert np.array_equal(pack.load_pixels(0), folder.load_pixels(0))


def test_pack_gives_the_folders_splits(mixed: Path, tmp_path: Path) -> None:
    folder = open_dataset(str(mixed))
    pack = _pack(mixed, tmp_path / "data.pack")
    for seed in (0, 1, 7):
        a = make_splits("cifar10", folder.labels, folder.is_test, seed)
        b = make_splits("cifar10", pack.labels, pack.is_test, seed)
        for part in ("train", "val", "query", "database"):
            assert np.array_equal(getattr(a, part), getattr(b, part)), (seed, part)


def test_pack_fingerprint_is_its_folders(mixed: Path, tmp_path: Path) -> None:
    folder = open_dataset(str(mixed))
    pack = _pack(mixed, tmp_path / "data.pack")
    assert pack.fingerprint() == folder.fingerprint()
    other = tmp_path / "other.pack"
    write_pack(open_dataset(str(make_image_folder(tmp_path / "other", seed=3))), other)
    assert PackedDataset(other).fingerprint() != folder.fingerprint()
    # remembered like a folder's digest: a memo hit reads nothing of the images
    memo = tmp_path / "memo"
    first = open_dataset(str(tmp_path / "data.pack"), fingerprint_memo=memo)
    assert first.fingerprint() == folder.fingerprint() and len(list(memo.iterdir())) == 1
    second = open_dataset(str(tmp_path / "data.pack"), fingerprint_memo=memo)
    second.encoded = None  # type: ignore[method-assign, assignment]
    assert second.fingerprint() == folder.fingerprint()


def test_damaged_image_bytes_fail_the_fingerprint(mixed: Path, tmp_path: Path) -> None:
    path = tmp_path / "data.pack"
    pack = _pack(mixed, path)
    data = bytearray(path.read_bytes())
    data[int(pack.offsets[5]) + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"do not match the digest.*re-run deephash pack"):
        PackedDataset(path).fingerprint()


def test_baseline_on_the_pack_reads_the_folders_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_image_folder(tmp_path / "data", n_classes=3, n_train=6, n_test=2)
    pack = tmp_path / "data.pack"
    write_pack(open_dataset(str(folder)), pack)
    assert baseline(folder, tmp_path / "a", tmp_path / "cache", "--tsne-points", "0") == 0
    import deephash.features as features

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(features, "extract_views", no_extraction)
    assert baseline(pack, tmp_path / "b", tmp_path / "cache", "--tsne-points", "0") == 0
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in "ab")
    assert a == b


def test_packing_is_deterministic(mixed: Path, tmp_path: Path) -> None:
    one, two, again = tmp_path / "1.pack", tmp_path / "2.pack", tmp_path / "again.pack"
    size = write_pack(open_dataset(str(mixed)), one)
    write_pack(open_dataset(str(mixed)), two)
    assert one.read_bytes() == two.read_bytes() and size == one.stat().st_size
    write_pack(PackedDataset(one), again)  # a pack of a pack is the same pack
    assert again.read_bytes() == one.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_official_release_is_packed_as_lossless_png(tmp_path: Path) -> None:
    images, labels = write_release(tmp_path / "cifar", per_batch=10)
    source = open_dataset(str(tmp_path / "cifar"))
    pack = _pack(tmp_path / "cifar", tmp_path / "cifar.pack")
    assert pack.names[0] == f"train/{source.classes[labels[0]]}/00000.png"
    assert pack.is_test.tolist() == source.is_test.tolist() and len(pack) == 60
    for i in range(len(pack)):
        assert pack.encoded(i).startswith(b"\x89PNG")
        assert np.array_equal(pack.load_pixels(i), images[i])


def _future(data: bytes) -> bytes:
    return MAGIC + struct.pack("<I", 3) + data[len(MAGIC) + 4:]


DAMAGE = {
    "empty": lambda data: b"",
    "wrong magic": lambda data: b"PK\x03\x04" + data[4:],
    "future version": _future,
    "cut in the header": lambda data: data[:40],
    "cut in the images": lambda data: data[:-10],
    "longer": lambda data: data + b"\0",
    "header not JSON": lambda data: data[:len(MAGIC) + 12] + b"#" + data[len(MAGIC) + 13:],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_packs_are_refused_in_one_line(damage: str, mixed: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.pack"
    write_pack(open_dataset(str(mixed)), path)
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.raises(DataError) as raised:
        PackedDataset(path)
    message = str(raised.value)
    assert str(path) in message and "deephash pack" in message and "\n" not in message
    if damage == "future version":
        assert "format version 3" in message
    # every command stops with that one line (or says the file is not a pack)
    assert main(["baseline", "--data-dir", str(path), "--out", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err


def test_open_dataset_tells_files_apart(mixed: Path, tmp_path: Path) -> None:
    path = tmp_path / "data.bin"  # detected by its magic bytes, not by its name
    write_pack(open_dataset(str(mixed)), path)
    assert is_pack(path) and isinstance(open_dataset(str(path), "imagefolder"), PackedDataset)
    with pytest.raises(DataError, match=r"is a deephash pack.*--format auto"):
        open_dataset(str(path), "cifar10")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"is a file but neither a deephash pack nor a \.csv"):
        open_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "missing.pack"))


def test_cli_pack_refuses_an_existing_file(mixed: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out" / "data.pack"
    assert main(["pack", str(mixed), str(path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"packed 30 images of 3 classes into {path} ({path.stat().st_size} bytes)"]
    before = path.read_bytes()
    assert main(["pack", str(tmp_path / "other"), str(path)]) == 2  # missing DATA_DIR
    assert main(["pack", str(make_image_folder(tmp_path / "other", seed=4)), str(path)]) == 2
    assert "exists; replace it with --overwrite" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["pack", str(tmp_path / "other"), str(path), "--overwrite"]) == 0
    assert path.read_bytes() != before
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert main(["pack", str(mixed), str(notes), "--overwrite"]) == 2
    assert "not a deephash pack; refusing" in capsys.readouterr().err
    assert notes.read_text() == "keep me"


def test_index_and_overwrite_accept_a_pack(mixed: Path, tmp_path: Path) -> None:
    from deephash.studies.baseline_config import BaselineConfig, DataConfig
    from deephash.studies.configs import IndexConfig
    from deephash.studies.run_folder import open_run
    from deephash.validation import validate

    run = tmp_path / "run"
    path = run / "data.pack"
    write_pack(open_dataset(str(mixed)), path)
    (tmp_path / "best.pt").write_bytes(b"")
    validate(IndexConfig(checkpoint=str(tmp_path / "best.pt"), data_dir=str(path),
                         device="cpu"))
    (run / "config.yaml").write_text("out: run\n")
    config = BaselineConfig(out=str(run), data=DataConfig(data_dir=str(path)))
    with pytest.raises(ConfigError, match="holds the data"):
        open_run(run, config, overwrite=True)  # the pack lives in that run folder


class _Pixels(torch.utils.data.Dataset[torch.Tensor]):
    def __init__(self, dataset: PackedDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.dataset.load_pixels(index)).flatten()


@pytest.mark.parametrize("preloaded", [False, True])
def test_worker_processes_read_a_pack(mixed: Path, tmp_path: Path, preloaded: bool) -> None:
    folder = open_dataset(str(mixed))
    pack = _pack(mixed, tmp_path / "data.pack")
    if preloaded:  # pickled state carries no decoded pixels, only the path and header
        assert pack.preload()
        assert len(pickle.dumps(pack)) < int(pack._pixel_offsets[-1]) // 2
    loader = torch.utils.data.DataLoader(_Pixels(pack), batch_size=None, num_workers=2)
    for i, pixels in enumerate(loader):
        assert np.array_equal(pixels.numpy(), folder.load_pixels(i).ravel()), i
    copy = pickle.loads(pickle.dumps(pack))  # what a spawned worker receives
    assert np.array_equal(copy.load_pixels(3), folder.load_pixels(3))


@pytest.mark.slow
def test_cifar10_subset_packs_to_its_pixels(shared_cifar: Path, tmp_path: Path) -> None:
    source = slice_of(shared_cifar, tmp_path / "slice", 24, 6)
    folder = open_dataset(str(source))
    pack = _pack(source, tmp_path / "cifar.pack")
    assert len(pack) == 300 and pack.fingerprint() == folder.fingerprint()
    assert all(pack.encoded(i).startswith(b"\xff\xd8\xff") for i in range(len(pack)))
    for i in range(len(pack)):
        assert np.array_equal(pack.load_pixels(i), folder.load_pixels(i)), folder.describe(i)
    copied = tmp_path / "copied.pack"
    shutil.copy(tmp_path / "cifar.pack", copied)
    assert PackedDataset(copied).fingerprint() == folder.fingerprint()


@pytest.mark.parametrize("method", ["hashnet", "triplet"])
def test_gpu_finetune_check_runs_on_the_cpu_from_a_small_pack(tmp_path: Path,
                                                              method: str) -> None:
    """benchmarks/gpu/finetune_check.sh end to end, dry-run on the CPU: a packed tiny
    folder, one epoch of the method's full finetuning (issue 22's HashNet, the default, and
    issue 12's triplet recipe), a metrics.json written where the device call would bring
    it back, and the run's config naming the method's loss."""
    import os
    import subprocess
    import sys

    from conftest import make_image_folder

    from deephash.cli import main

    pack = tmp_path / "small.pack"
    assert main(["pack", str(make_image_folder(tmp_path / "folder")), str(pack)]) == 0
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "METHOD": method, "DEV": "cpu", "EPOCHS": "1", "PACK": str(pack),
           "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
           "EXTRA": "--image-size 32 --batch-classes 3 --batch-samples 4 --hidden-dims 16 "
                    "--num-workers 0"}
    done = subprocess.run(["bash", "benchmarks/gpu/finetune_check.sh"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "out" / "finetune-48" / "bits-48"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["map@all"] <= 1 and not (tmp_path / "out" / "cache").exists()
    config = (run / "config.yaml").read_text()
    assert "mode: finetune" in config
    assert f"loss: {'hashnet' if method == 'hashnet' else 'facenet'}" in config


def _kinds(tmp_path: Path) -> dict[str, tuple[str, str, str | None]]:
    """``kind -> (data path, --format, --image-root)`` of one small data set of each kind
    deephash reads from files (multi-label list files, a CSV with unlabelled images)."""
    from test_list_files import _images, write_lists

    split = make_image_folder(tmp_path / "split", n_classes=3, n_train=3, n_test=1)
    names = _images(tmp_path / "repo" / "img", 5)
    lists = write_lists(tmp_path / "repo" / "lists",
                        [(f"img/{names[0]}", [1, 1, 0]), (f"img/{names[1]}", [0, 0, 1])],
                        [(f"img/{names[4]}", [0, 1, 1])],
                        [(f"img/{names[1]}", [0, 0, 1]), (f"img/{names[2]}", [1, 0, 0]),
                         (f"img/{names[3]}", [0, 1, 0])], classes=["a", "b", "c"])
    (tmp_path / "repo" / "a.csv").write_text(
        "path,label\nimg/0.png,x|y\nimg/1.png,\nimg/2.png,y\n")
    (tmp_path / "repo" / "b.csv").write_text(
        "path,label,split\nimg/0.png,x,train\nimg/1.png,y,train\nimg/2.png,y,test\n")
    return {"imagefolder": (str(split), "auto", None),
            "classfolders": (str(split / "train"), "classfolders", None),
            "lists": (str(lists), "lists", str(tmp_path / "repo")),
            "csv unlabelled": (str(tmp_path / "repo" / "a.csv"), "auto", None),
            "csv split": (str(tmp_path / "repo" / "b.csv"), "csv", None),
            "unlabelled": (str(tmp_path / "repo" / "img"), "unlabelled", None)}


@pytest.mark.parametrize("kind", ["imagefolder", "classfolders", "lists", "csv unlabelled",
                                  "csv split", "unlabelled"])
def test_every_kind_packs_and_reads_back_equal(kind: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "unlabelled":
        pytest.importorskip("deephash.data.unlabelled")
    data, kind_flag, image_root = _kinds(tmp_path)[kind]
    source = open_dataset(data, kind_flag, image_root=image_root)
    path = tmp_path / "out" / "data.pack"
    argv = ["pack", data, str(path), "--format", kind_flag]
    assert main(argv + (["--image-root", image_root] if image_root else [])) == 0
    assert f"packed {len(source)} images" in capsys.readouterr().out
    pack = open_dataset(str(path))
    assert isinstance(pack, PackedDataset)
    assert pack.labels == source.labels and pack.classes == source.classes
    assert np.array_equal(pack.is_test, source.is_test)
    assert (pack.parts is None) == (source.parts is None)
    if source.parts is not None:
        assert pack.parts is not None and pack.parts.keys() == source.parts.keys()
        for name, rows in source.parts.items():
            assert np.array_equal(pack.parts[name], rows)
    assert pack.fingerprint() == source.fingerprint()
    for i in range(len(source)):
        assert np.array_equal(pack.load_pixels(i), source.load_pixels(i))
    version = struct.unpack("<I", path.read_bytes()[len(MAGIC):len(MAGIC) + 4])[0]
    single = source.labels.is_single and source.labels.labelled.all() and source.parts is None
    assert version == (1 if single else 2)  # single-label packs keep the old format
    again = tmp_path / "again.pack"
    write_pack(pack, again)  # a pack of a pack is the same pack
    assert again.read_bytes() == path.read_bytes()


def test_a_single_label_pack_is_format_one(mixed: Path, tmp_path: Path) -> None:
    """Old packs open, and single-label packs are written as they were: ``labels`` ids."""
    path = tmp_path / "data.pack"
    write_pack(open_dataset(str(mixed)), path)
    header, version, _start = packed_module.read_header(path)
    assert version == 1 and "label_sets" not in header and "parts" not in header
    assert header["labels"] == open_dataset(str(mixed)).labels.ids.tolist()


@pytest.mark.parametrize("change, fragment", [
    ({"label_sets": [[0, 9]]}, "label_sets do not fit the images"),
    ("classes", "label_sets name classes the pack does not have"),
    ({"parts": {"train": [1, 0]}}, "parts are not ascending pool indices"),
    ({"parts": [0]}, "parts is not a mapping"),
])
def test_damaged_label_sets_and_parts_are_refused(change: object, fragment: str,
                                                  tmp_path: Path) -> None:
    from test_list_files import _images, write_lists

    names = _images(tmp_path / "d", 3)
    write_lists(tmp_path / "d", [(names[0], [1, 1])], [(names[1], [0, 1])],
                [(names[2], [1, 0])])
    path = tmp_path / "data.pack"
    write_pack(open_dataset(str(tmp_path / "d")), path)
    header, version, start = packed_module.read_header(path)
    assert version == 2
    if change == "classes":
        header["classes"] = ["only"]
    else:
        assert isinstance(change, dict)
        header.update(change)
    encoded = json.dumps(header, sort_keys=True).encode()
    path.write_bytes(MAGIC + struct.pack("<IQ", 2, len(encoded)) + encoded
                     + path.read_bytes()[start:])
    with pytest.raises(DataError, match=f"damaged header.*{fragment}"):
        PackedDataset(path)
