"""Index folders: what ``deephash index --out`` may replace, how it writes (atomically, with
checksums), what a damaged folder says, and full or read-only disks.

Every refusal is one line without a traceback and leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest
from PIL import Image
from test_service_api import build_tree, cli_rows

from deephash import fileio
from deephash.cli import main
from deephash.service.state import load_state
from deephash.service.store import add_images, compact

QUERY = Path("data") / "test" / "class1" / "03.png"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("tree")).parent


@pytest.fixture
def tree(built: Path, tmp_path: Path) -> Path:
    """A private copy of ``data/``, ``run/`` (16-bit codes), the cache ``c/`` and ``index/``."""
    return Path(shutil.copytree(built, tmp_path / "tree"))


def index_cli(tree: Path, *extra: str, out: Path | None = None,
              data: Path | None = None) -> int:
    return main(["index", "--checkpoint", str(tree / "run" / "bits-16" / "best.pt"),
                 "--data-dir", str(data or tree / "data"), "--out", str(out or tree / "index"),
                 "--cache-dir", str(tree / "c"), *extra])


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``deephash: error:`` line on stderr (and nothing like a traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("deephash: error:")]
    assert len(lines) == 1, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def add_one_image(index: Path) -> None:
    """Add one image to the index as ``POST /items`` does (a copy of item 0's vector), then
    compact it into generation 1."""
    state = load_state(index)
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), (200, 200, 60)).save(buffer, format="PNG")
    outputs = None if state.outputs is None else state.outputs[:1]
    added = add_images(state, state.vectors[:1], [(buffer.getvalue(), "png")], [0],
                       state.items.classes, outputs)
    compact(added)  # the next generation, as a server compacts its appends


# --- what --out may replace ------------------------------------------------------------------


def test_an_index_is_replaced_only_with_overwrite_and_in_place(
        tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    index = tree / "index"
    (index / "notes.txt").write_text("mine")
    before = snapshot(index)
    rows = cli_rows(index, tree / QUERY, 48, capsys)

    def no_extraction(*args: object, **kwargs: object) -> None:
        raise AssertionError("refused only after extracting")

    with monkeypatch.context() as patch:
        patch.setattr("deephash.studies.search.compute_views", no_extraction)
        assert index_cli(tree, "--index", "BFlat-numpy") == 2
        assert ("already holds an index; replace it with --overwrite, or choose another --out"
                in one_error(capsys))
    assert snapshot(index) == before
    assert index_cli(tree, "--index", "BFlat-numpy", "--overwrite") == 0
    info = json.loads((index / "index.json").read_text())
    assert info["index"] == "BFlat-numpy" and info["generation"] == 1
    assert info["index_file"] == "index-1.npz" and info["items_file"] == "items-1.npz"
    assert set(info["checksums"]) == {"index-1.npz", "items-1.npz", "outputs-1.npz"}
    assert (index / "notes.txt").read_text() == "mine"  # only index files are replaced
    assert load_state(index).size == 48
    # both exact: the same distances, the same items at each distance
    after = cli_rows(index, tree / QUERY, 48, capsys)
    assert sorted(after) == sorted(rows)
    assert [d for d, _ in after] == [d for d, _ in rows]
    assert index_cli(tree, "--overwrite") == 0  # and back: generation 2, generation 0 removed
    assert not (index / "index.npz").exists() and (index / "index-1.npz").exists()
    assert not list(tree.glob(".index.*.tmp")) and not list(index.glob(".*.tmp"))


def test_images_added_to_an_index_are_never_dropped(
        tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tree / "index"
    add_one_image(index)
    before = snapshot(index)
    assert index_cli(tree, "--overwrite") == 2
    error = one_error(capsys)
    assert f"{index} holds 1 images added to the index (in {index / 'added'})" in error
    assert "copy them into the data set under their class and index into another --out" in error
    assert snapshot(index) == before and load_state(index).size == 49
    shutil.move(index / "added", tree / "kept")  # the user's call: then it may be replaced
    assert index_cli(tree, "--overwrite") == 0 and load_state(index).size == 48


@pytest.mark.parametrize("guarded", ["working directory", "data", "cache", "run"])
def test_overwrite_never_replaces_what_a_mistake_would_destroy(
        tree: Path, guarded: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    index, extra, data = tree / "index", ["--overwrite"], tree / "data"
    if guarded == "working directory":
        monkeypatch.chdir(index)
        expected = "holds the working directory"
    elif guarded == "data":  # the data inside the index folder
        data = Path(shutil.move(data, index / "data"))
        expected = "holds the data"
    elif guarded == "cache":
        extra += ["--cache-dir", str(index / "cache")]
        expected = "holds the feature cache"
    else:
        (index / "run.json").write_text('{"deephash": "0.1"}')
        expected = "holds a deephash run"
    before = snapshot(index)
    assert index_cli(tree, *extra, data=data) == 2
    assert expected in one_error(capsys)
    assert snapshot(index) == before


# --- atomic writes and full disks -----------------------------------------------------------


def disk_full_at(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Writing the file ``name`` fails half-way as on a full disk (the atomic writer's own
    failure path runs: its temporary file is removed, the error names the file)."""
    real = fileio.atomic_write

    def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
        if Path(path).name != name:
            return real(path, write)

        def half(handle: IO[bytes]) -> None:
            handle.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(path, half)

    monkeypatch.setattr(fileio, "atomic_write", atomic_write)


def test_a_full_disk_mid_overwrite_leaves_the_old_index(
        tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    index = tree / "index"
    rows = cli_rows(index, tree / QUERY, 48, capsys)
    before = snapshot(index)
    disk_full_at(monkeypatch, "items-1.npz")
    assert index_cli(tree, "--overwrite") == 1
    error = one_error(capsys)
    assert f"No space left on device ({index / 'items-1.npz'})" in error
    assert "nothing was written in part" in error
    assert "every file completed before it is kept" in error
    after = snapshot(index)  # the old files as they were (a complete index-1.npz beside them)
    assert {name: after.get(name) for name in before} == before
    assert json.loads((index / "index.json").read_text())["generation"] == 0
    assert not list(index.glob(".*.tmp"))
    assert cli_rows(index, tree / QUERY, 48, capsys) == rows  # the old index, unchanged


def test_a_full_disk_leaves_no_partial_new_index(
        tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    disk_full_at(monkeypatch, "items.npz")
    assert index_cli(tree, out=tree / "new") == 1
    assert "No space left on device (" in one_error(capsys)
    assert not (tree / "new").exists() and not list(tree.glob(".new.*"))


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[None]:
    """``folder`` as a tmpfs mounted with ``options``; skips the test where mounting is not
    allowed (not root, no mount)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, check=False)
    except OSError:
        done = None
    if done is None or done.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_tmpfs_ends_in_one_line(tree: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full"
    with mounted_tmpfs(full, "size=2m"):
        with open(full / "filler", "wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        assert index_cli(tree, out=full / "index") == 1
        error = one_error(capsys)
        assert "No space left on device (" in error and str(full) in error
        assert sorted(p.name for p in full.iterdir()) == ["filler"]  # nothing partial


@pytest.mark.parametrize("how", ["read-only mount", "simulated"])
def test_a_read_only_cache_runs_uncached_with_one_warning(
        tree: Path, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "ro-cache"
    with contextlib.ExitStack() as stack:
        if how == "read-only mount":
            stack.enter_context(mounted_tmpfs(cache, "ro,size=1m"))
        else:
            def refuse(root: Path) -> None:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))

            monkeypatch.setattr("deephash.pipeline.cache._try_writing", refuse)
        with caplog.at_level(logging.WARNING):
            assert main(["index", "--checkpoint", str(tree / "run" / "bits-16" / "best.pt"),
                         "--data-dir", str(tree / "data"), "--out", str(tmp_path / "i"),
                         "--cache-dir", str(cache)]) == 0
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "cannot be written" in warnings[0]
        assert "running without the cache" in warnings[0]
        assert not any(p.is_file() for p in cache.rglob("*"))
    assert load_state(tmp_path / "i").size == 48


@pytest.mark.parametrize("variable", ["DEEPHASH_CACHE", "HOME"])
def test_a_default_cache_under_a_file_is_one_line(
        variable: str, tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "best.pt").write_bytes(b"")
    monkeypatch.delenv("DEEPHASH_CACHE")
    monkeypatch.setenv(variable, str(tmp_path / "a-file" / "x"))
    assert main(["index", "--checkpoint", str(tmp_path / "best.pt"), "--data-dir",
                 str(image_folder), "--out", str(tmp_path / "out")]) == 2
    error = one_error(capsys)
    assert f"is under {tmp_path / 'a-file'}, which is a file" in error
    assert ("$DEEPHASH_CACHE" if variable == "DEEPHASH_CACHE" else "$HOME") in error
    assert not (tmp_path / "out").exists()


# --- damaged index folders ------------------------------------------------------------------


def _rewrite(path: Path, **changes: np.ndarray) -> None:
    arrays = dict(np.load(path))
    arrays.update(changes)
    np.savez(path, **arrays)  # allow_pickle: an object array goes in as a pickle


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated index.npz": lambda i: (i / "index.npz").write_bytes(
        (i / "index.npz").read_bytes()[:300]),
    "random faiss blob": lambda i: _rewrite(i / "index.npz", faiss=np.random.default_rng(
        0).integers(0, 256, len(np.load(i / "index.npz")["faiss"]), dtype=np.uint8)),
    "truncated faiss blob": lambda i: _rewrite(i / "index.npz",
                                               faiss=np.load(i / "index.npz")["faiss"][:67]),
    "object array in index.npz": lambda i: _rewrite(
        i / "index.npz", ids=np.array([None] * 48, dtype=object)),
    "float labels in items.npz": lambda i: _rewrite(i / "items.npz",
                                                    labels=np.zeros(48, np.float32)),
    "2-d paths in items.npz": lambda i: _rewrite(
        i / "items.npz", paths=np.load(i / "items.npz")["paths"].reshape(6, 8)),
}


@pytest.mark.parametrize("checksums", [True, False], ids=["checksums", "old folder"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_file_is_one_line_before_faiss_or_numpy(
        tree: Path, damage: str, checksums: bool, capsys: pytest.CaptureFixture[str]) -> None:
    index = tree / "index"
    info = json.loads((index / "index.json").read_text())
    assert set(info["checksums"]) == {"index.npz", "items.npz", "outputs.npz"}
    if not checksums:  # as written before checksums: the structure is checked instead
        del info["checksums"]
        (index / "index.json").write_text(json.dumps(info))
    DAMAGE[damage](index)
    assert main(["search", str(tree / QUERY), "--index", str(index)]) == 2
    error = one_error(capsys)
    name = "items.npz" if "items" in damage else "index.npz"
    assert str(index / name) in error and error.endswith("rebuild with deephash index")
    assert ("is damaged or was changed since it was written" in error) == checksums


def test_checksums_must_cover_every_file_of_the_generation(
        tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file the generation names without a recorded SHA-256 (an edited index.json, or a
    writer that forgot one) is refused, not read unchecked."""
    index = tree / "index"
    add_one_image(index)  # generation 1: index-1.npz, items-1.npz
    info = json.loads((index / "index.json").read_text())
    assert set(info["checksums"]) == {"index-1.npz", "items-1.npz", "outputs-1.npz"}
    del info["checksums"]["items-1.npz"]
    (index / "index.json").write_text(json.dumps(info))
    assert main(["search", str(tree / QUERY), "--index", str(index)]) == 2
    assert "its checksums do not cover the files it names" in one_error(capsys)


# --- search bounds --------------------------------------------------------------------------


def test_search_k_beyond_the_index_shows_all_and_show_makes_its_folder(
        tree: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("deephash.studies.search.SHOW_MAX", 5)
    picture = tree / "new" / "sub" / "results.jpg"
    with caplog.at_level(logging.INFO):
        assert main(["search", str(tree / QUERY), "--index", str(tree / "index"), "-k",
                     str(10**12), "--show", str(picture)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 48 + 1 and lines[-1].startswith("# all ")  # header, rows, ties
    notes = [r.getMessage() for r in caplog.records]
    assert f"-k {10**12}: the index holds 48 images; showing them all" in notes
    assert "--show: the picture shows the first 5 of 48 results" in notes
    with Image.open(picture) as image:
        assert image.format == "JPEG" and image.width == 6 * 160
