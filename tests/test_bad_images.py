"""Bad images in a data set (issue 20): every image's header is read before any run folder
is written; an unreadable image or a decompression bomb (a small PNG declaring 30000 x
30000 pixels), in a class folder or in a pack, stops with one line naming the file, or is
left out with ``--skip-bad-images`` and listed in ``run.json``. Damaged and crafted packs
fail before the run folder too."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from deephash.cli import main
from deephash.data import headers as headers_module
from deephash.data import open_dataset
from deephash.data import packed as packed_module
from deephash.data.decode import decode_pixels
from deephash.data.headers import find_bad_images, header_problem
from deephash.data.packed import MAGIC, PackedDataset, write_pack
from deephash.errors import DataError


def declaring(width: int, height: int) -> bytes:
    """A valid 8 x 8 PNG whose header declares ``width`` x ``height`` pixels (a bomb's
    header: PIL refuses it on opening, before decoding anything)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + bytes(data[24:29])  # IHDR's 13 bytes
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


BOMB = declaring(30000, 30000)


def baseline(data: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["baseline", "--data-dir", str(data), "--out", str(out), "--cache-dir",
                 str(cache), "--image-size", "32", "--num-workers", "0", "--tsne-points", "0",
                 "--device", "cpu", *extra])


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in err and "BytesIO" not in err, err
    return lines[0]


def test_the_header_tells_what_cannot_be_decoded(tmp_path: Path) -> None:
    good = io.BytesIO()
    Image.new("RGB", (5, 3)).save(good, "JPEG")
    assert header_problem(good.getvalue()) is None
    (tmp_path / "good.jpg").write_bytes(good.getvalue())
    assert header_problem(tmp_path / "good.jpg") is None
    assert header_problem(b"hello") == "not an image file PIL can identify"
    assert header_problem(BOMB).startswith("too large to decode: Image size (900000000 pixels)")
    limit = Image.MAX_IMAGE_PIXELS
    # above PIL's limit but under twice it: PIL would only warn, and allocate 300 MB
    assert header_problem(declaring(10000, 10000)) == (
        "too large to decode (a decompression bomb?): it declares 10000 x 10000 = "
        f"100,000,000 pixels, more than PIL's limit of {limit:,}")


@pytest.mark.parametrize("data", [BOMB, b"hello"])
def test_decoding_names_the_image_without_a_file_object(data: bytes) -> None:
    with pytest.raises(DataError) as raised:
        decode_pixels(data, "pack.bin:train/a/x.png")
    message = str(raised.value)
    assert message.startswith("cannot read image pack.bin:train/a/x.png: ")
    assert "BytesIO" not in message and "\n" not in message


@pytest.fixture
def bombed(tmp_path: Path) -> Path:
    root = make_image_folder(tmp_path / "data", n_classes=3, n_train=8, n_test=3)
    (root / "train" / "class1" / "zz-bomb.png").write_bytes(BOMB)
    return root


def test_a_bomb_in_a_class_folder_is_one_line_before_the_run_folder(
        bombed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert baseline(bombed, tmp_path / "run", tmp_path / "cache") == 2
    line = one_error(capsys.readouterr().err)
    assert line == (f"deephash: error: cannot read image {bombed}/train/class1/zz-bomb.png: too "
                    "large to decode: Image size (900000000 pixels) exceeds limit of 178956970 "
                    "pixels, could be decompression bomb DOS attack; replace or delete the "
                    "file, or pass --skip-bad-images to leave such images out")
    assert not (tmp_path / "run").exists()  # no failed run left behind
    for command in ("train", "hash"):  # a study's folder is not written either
        assert main([command, "--data-dir", str(bombed), "--out", str(tmp_path / command),
                     "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]) == 2
        assert "zz-bomb.png: too large to decode" in one_error(capsys.readouterr().err)
        assert not (tmp_path / command).exists()


def test_skip_bad_images_leaves_them_out_and_lists_them(
        bombed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (bombed / "test" / "class0" / "notes.png").write_bytes(b"not an image")
    with caplog.at_level("WARNING"):
        assert baseline(bombed, tmp_path / "run", tmp_path / "cache", "--skip-bad-images") == 0
    assert "skipping 2 bad image(s)" in caplog.text
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["state"] == "finished"
    assert info["skipped_images"] == [
        {"image": f"{bombed}/train/class1/zz-bomb.png",
         "problem": "too large to decode: Image size (900000000 pixels) exceeds limit of "
                    "178956970 pixels, could be decompression bomb DOS attack"},
        {"image": f"{bombed}/test/class0/notes.png",
         "problem": "not an image file PIL can identify"}]
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert splits["n_pool"] == 3 * (8 + 3)  # the generated images, not the two bad files
    # the report's gallery reads the run's pool: the bad images are left out there too
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report"),
                 "--queries", "33", "-k", "32"]) == 0
    assert (tmp_path / "report" / "report.html").read_text().count("data:image/png") > 33
    # the skipped data set's features are its own: the clean folder's are not reused
    clean = make_image_folder(tmp_path / "clean", n_classes=3, n_train=8, n_test=3)
    assert baseline(clean, tmp_path / "clean-run", tmp_path / "cache") == 0
    clean_splits = json.loads((tmp_path / "clean-run" / "splits.json").read_text())
    assert clean_splits["dataset_fingerprint"] != splits["dataset_fingerprint"]


def test_the_header_check_is_remembered_with_the_fingerprints(
        bombed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    memo = tmp_path / "cache" / "fingerprints"
    first = find_bad_images(open_dataset(str(bombed), fingerprint_memo=memo))
    assert [Path(bad.where).name for bad in first] == ["zz-bomb.png"]

    def no_reading(source: object) -> None:
        raise AssertionError("the headers were read again")

    monkeypatch.setattr(headers_module, "header_problem", no_reading)
    assert find_bad_images(open_dataset(str(bombed), fingerprint_memo=memo)) == first
    (bombed / "train" / "class1" / "zz-bomb.png").unlink()  # the folder changed: read again
    with pytest.raises(AssertionError, match="read again"):
        find_bad_images(open_dataset(str(bombed), fingerprint_memo=memo))


def test_packing_a_bomb_is_one_line(bombed: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", str(bombed), str(tmp_path / "data.pack")]) == 2
    assert "zz-bomb.png: too large to decode" in one_error(capsys.readouterr().err)
    assert not (tmp_path / "data.pack").exists()


def test_a_bomb_in_a_pack_is_one_line_or_skipped(bombed: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A crafted pack whose header says 8 x 8 for the bomb."""
    real = packed_module._height_width
    with monkeypatch.context() as crafting:
        crafting.setattr(packed_module, "_height_width", lambda data, where: (
            (8, 8) if where.endswith("zz-bomb.png") else real(data, where)))
        write_pack(open_dataset(str(bombed)), tmp_path / "data.pack")
    pack = tmp_path / "data.pack"
    assert baseline(pack, tmp_path / "run", tmp_path / "cache") == 2
    line = one_error(capsys.readouterr().err)
    assert f"cannot read image {pack}:train/class1/zz-bomb.png: too large to decode" in line
    assert not (tmp_path / "run").exists()
    assert baseline(pack, tmp_path / "run", tmp_path / "cache", "--skip-bad-images") == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [s["image"] for s in info["skipped_images"]] == [f"{pack}:train/class1/zz-bomb.png"]


def test_a_damaged_pack_fails_before_the_run_folder(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_image_folder(tmp_path / "data", n_classes=3, n_train=6, n_test=2)
    path = tmp_path / "data.pack"
    write_pack(open_dataset(str(folder)), path)
    data = bytearray(path.read_bytes())
    data[int(PackedDataset(path).offsets[5]) + 40] ^= 0xFF  # an image's bytes, not its header
    path.write_bytes(bytes(data))
    for command in ("baseline", "train"):
        assert main([command, "--data-dir", str(path), "--out", str(tmp_path / "run"),
                     "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]) == 2
        assert "do not match the digest" in one_error(capsys.readouterr().err)
        assert not (tmp_path / "run").exists()


def test_a_deeply_nested_pack_header_is_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    header = b"[" * 200_000 + b"]" * 200_000
    path = tmp_path / "nested.pack"
    path.write_bytes(MAGIC + struct.pack("<IQ", 1, len(header)) + header)
    with pytest.raises(DataError, match="JSON nested too deeply"):
        PackedDataset(path)
    assert baseline(path, tmp_path / "run", tmp_path / "cache") == 2
    assert "nested too deeply" in one_error(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_pixels_of_a_skipped_data_set_are_the_kept_images(bombed: Path) -> None:
    from deephash.data.headers import checked_images

    full = open_dataset(str(bombed))
    kept = checked_images(full, skip=True)
    assert len(kept) == len(full) - 1
    bomb = next(i for i in range(len(full)) if full.describe(i).endswith("zz-bomb.png"))
    for index in (0, bomb, len(kept) - 1):  # the bomb's pool index now holds the next image
        source = index if index < bomb else index + 1
        assert kept.describe(index) == full.describe(source)
        assert np.array_equal(kept.load_pixels(index), full.load_pixels(source))
        assert kept.labels.ids[index] == full.labels.ids[source]
