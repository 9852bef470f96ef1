"""Appends that stay cheap: each add writes one segment of its own rows (bytes independent
of the folder's size), durably (a crash loses at most that add), loads as the same items
stored in one go, compacts atomically, and searches keep answering meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from deephash.index import create_index
from deephash.index.rerank import CodeRanker
from deephash.labels import LabelSet
from deephash.service import store
from deephash.service.folder import base_bytes, read_info
from deephash.service.items import Items
from deephash.service.outputs import save_outputs
from deephash.service.searcher import Searcher
from deephash.service.state import IndexState, load_state, with_spare_room

BITS, DIM = 48, 8


class Died(BaseException):
    """The process ends here (nothing after it runs, no cleanup of the write)."""


def rows(n: int, seed: int, codes: bool) -> tuple[np.ndarray, np.ndarray]:
    """``n`` items' vectors and continuous outputs (codes: the outputs' packed signs)."""
    outputs = np.random.default_rng(seed).normal(size=(n, BITS if codes else DIM))
    if codes:
        return np.packbits(outputs >= 0, axis=1), outputs.astype(np.float16)
    return outputs.astype(np.float32), outputs.astype(np.float16)


def write_folder(folder: Path, n: int, codes: bool = True, seed: int = 0,
                 items: Items | None = None, vectors: np.ndarray | None = None,
                 outputs: np.ndarray | None = None, factory: str | None = None,
                 nprobe: int | None = None) -> Path:
    """An index folder of ``n`` synthetic items (or the given ones), generation 0, its index
    ``factory`` (default ``BFlat-numpy`` or ``Flat``) saved with ``nprobe``."""
    if vectors is None or outputs is None:
        vectors, outputs = rows(n, seed, codes)
    if items is None:
        labels = LabelSet.from_ids(np.arange(n) % 3, 3)
        items = Items(np.array([f"c/{i}.png" for i in range(n)]), labels, ("a", "b", "c"),
                      np.zeros(n, dtype=bool))
    index = create_index(factory or ("BFlat-numpy" if codes else "Flat"),
                         BITS if codes else DIM)
    index.configure(nprobe=nprobe)
    index.add(vectors, ids=np.arange(len(vectors)))
    kept = outputs
    parts: dict[str, Any] = {"index": index.save, "items": items.save}
    if codes:
        parts["outputs"] = lambda path: save_outputs(path, kept)
    folder.mkdir(parents=True)
    store.write_generation(folder, 0, {"codes": codes, "dim": BITS if codes else DIM,
                                       "index": index.factory, "checkpoint": "none.pt"}, parts)
    return folder


def append(state: IndexState, n: int, seed: int, labels: list[int],
           classes: tuple[str, ...] | None = None) -> IndexState:
    """``n`` images (a few bytes each) added as ``POST /items`` adds them."""
    vectors, outputs = rows(n, seed, bool(state.info["codes"]))
    images = [(bytes([seed, i]) * 50, "png") for i in range(n)]
    return store.add_images(state, vectors, images, labels, classes or state.items.classes,
                            outputs if state.outputs is not None else None)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def same_state(a: IndexState, b: IndexState) -> None:
    assert a.size == b.size and a.items.classes == b.items.classes
    assert np.array_equal(a.items.paths, b.items.paths)
    assert np.array_equal(a.items.local, b.items.local)
    assert a.items.labels == b.items.labels
    assert np.array_equal(a.vectors, b.vectors)
    assert (a.outputs is None) == (b.outputs is None)
    if a.outputs is not None:
        assert np.array_equal(a.outputs, b.outputs)  # type: ignore[arg-type]
    queries = a.vectors[::7]
    found, expected = a.index.search(queries, a.size), b.index.search(queries, b.size)
    assert np.array_equal(found.ids, expected.ids)
    assert np.array_equal(found.distances, expected.distances)


def test_bytes_written_per_append_do_not_grow_with_the_folder(tmp_path: Path) -> None:
    written = {}
    for n in (50, 20_000):
        folder = write_folder(tmp_path / str(n), n)
        before = files(folder)
        append(load_state(folder), 4, seed=1, labels=[0])
        after = files(folder)
        assert all(after[name] == data for name, data in before.items())  # nothing rewritten
        new = {name: len(data) for name, data in after.items() if name not in before}
        assert sorted(new) == ["added/" + f"{n + i}.png" for i in range(4)] + ["append-0-1.npz"]
        written[n] = sum(new.values())
        assert load_state(folder).size == n + 4
    base = sum(len(d) for d in files(tmp_path / "20000").values())
    assert written[20_000] <= written[50] * 1.05  # a few more digits in the paths at most
    assert written[20_000] < base / 100


@pytest.mark.parametrize("codes", [True, False], ids=["codes", "embeddings"])
def test_base_and_segments_load_as_the_same_items_stored_in_one_go(tmp_path: Path,
                                                                   codes: bool) -> None:
    folder = write_folder(tmp_path / "appended", 30, codes)
    state = load_state(folder)
    state = append(state, 1, seed=1, labels=[2])
    state = append(state, 4, seed=2, labels=[], classes=("a", "b", "c", "lemon"))
    state = append(state, 2, seed=3, labels=[0, 3])  # two labels: the items turn multi-hot
    loaded = load_state(folder)
    assert loaded.segments == 3 and loaded.segment_items == 7 and loaded.generation == 0
    assert loaded.items.multi_label and loaded.items.label_ids(36) == [0, 3]
    assert loaded.items.label_ids(31) == [] and loaded.items.label_ids(30) == [2]
    same_state(loaded, state)  # a fresh load is what the live state became
    at_once = write_folder(tmp_path / "at-once", 0, codes, items=state.items,
                           vectors=state.vectors,
                           outputs=state.outputs if codes else rows(37, 0, codes)[1])
    same_state(loaded, load_state(at_once))
    compacted = store.compact(loaded)
    assert compacted.generation == 1 and compacted.segments == 0
    fresh = load_state(folder)
    assert fresh.generation == 1 and fresh.segments == 0
    same_state(fresh, load_state(at_once))


def test_a_torn_segment_is_ignored_and_earlier_appends_stay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "f", 20)
    state = append(append(load_state(folder), 2, 1, [0]), 3, 2, [1])

    def torn(path: Path, **arrays: Any) -> None:
        (path.parent / f".{path.name}.x.tmp").write_bytes(b"PK\x03\x04 half a segment")
        raise Died

    monkeypatch.setattr("deephash.service.segments.save_npz", torn)
    with pytest.raises(Died):
        append(state, 2, 3, [2])
    monkeypatch.undo()
    assert (folder / ".append-0-3.npz.x.tmp").exists()
    same_state(load_state(folder), state)  # every committed item, nothing of the torn add
    assert append(load_state(folder), 1, 4, [0]).size == 26  # and the next add goes on


def test_a_crash_just_after_the_rename_keeps_that_append(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "f", 20)
    state = append(load_state(folder), 2, 1, [0])
    calls: list[Path] = []

    def died(where: Path) -> None:
        calls.append(where)
        if where == folder:  # the sync after the segment's rename
            raise Died

    monkeypatch.setattr(store, "sync_folder", died)
    with pytest.raises(Died):
        append(state, 3, 2, [1])
    monkeypatch.undo()
    fresh = load_state(folder)
    assert fresh.size == 25 and fresh.segments == 2
    assert np.array_equal(fresh.vectors[:22], state.vectors)
    assert np.array_equal(fresh.vectors[22:], rows(3, 2, True)[0])


def test_a_failed_sync_after_the_rename_undoes_the_append(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "f", 20)
    state = append(load_state(folder), 2, 1, [0])

    def fails(where: Path) -> None:
        if where == folder:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(store, "sync_folder", fails)
    with pytest.raises(OSError):
        append(state, 3, 2, [1])
    monkeypatch.undo()
    assert not (folder / "append-0-2.npz").exists()  # this process and the disk agree
    same_state(load_state(folder), state)
    assert append(state, 1, 3, [1]).size == 23


def test_a_damaged_segment_is_refused_in_one_line(tmp_path: Path) -> None:
    from deephash.errors import ConfigError

    folder = write_folder(tmp_path / "f", 20)
    append(load_state(folder), 2, 1, [0])
    path = folder / "append-0-1.npz"
    arrays = dict(np.load(path))
    arrays["vectors"] = arrays["vectors"] ^ 1  # edited, its digest kept
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match=r"cannot read .*append-0-1.npz: .*delete it"):
        load_state(folder)


def test_due_counts_items_and_bytes(tmp_path: Path) -> None:
    state = load_state(write_folder(tmp_path / "f", 20))
    assert not store.due(state, 1, 1)  # nothing appended
    state = append(state, 3, 1, [0])
    assert store.due(state, 3, 10**9) and not store.due(state, 4, 10**9)
    assert store.due(state, 10**9, state.segment_bytes)
    assert not store.due(state, 10**9, state.segment_bytes + 1)
    assert state.segment_bytes == (state.folder / "append-0-1.npz").stat().st_size


def test_due_waits_for_a_tenth_of_the_index(tmp_path: Path) -> None:
    """Compaction is O(N): it waits for 0.1 N appended items (and 0.1 of the base files'
    bytes) however low the thresholds, so an add stays amortised O(batch)."""
    folder = write_folder(tmp_path / "f", 100)
    state = append(load_state(folder), 9, 1, [0])  # 9 of 109 items
    assert not store.due(state, 1, 10**12)  # 9 < 10.9
    state = append(state, 3, 2, [0])  # 12 of 112
    assert store.due(state, 1, 10**12) and not store.due(state, 13, 10**12)
    base = sum(path.stat().st_size for path in folder.glob("*.npz")
               if not path.name.startswith("append-"))
    assert base_bytes(state.folder, state.info) == base
    assert store.due(state, 10**9, 1) == (state.segment_bytes >= 0.1 * base)
    state = append(state, 100, 3, [0])  # 111 appended: past 0.1 of the base's bytes
    assert store.due(state, 10**9, 1) and not store.due(state, 10**9, state.segment_bytes + 1)


@pytest.mark.parametrize("crash", ["index written in part", "items written in part",
                                   "before the switch", "after the switch"])
def test_a_crash_mid_compaction_leaves_every_committed_item(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str) -> None:
    folder = write_folder(tmp_path / "f", 20)
    state = append(append(load_state(folder), 2, 1, [0]), 3, 2, [1, 2])

    def torn(path: Path, **arrays: Any) -> None:
        (path.parent / f".{path.name}.x.tmp").write_bytes(b"half")
        raise Died

    def died(*args: Any, **kwargs: Any) -> None:
        raise Died

    if crash == "index written in part":
        monkeypatch.setattr("deephash.index.base.save_npz", torn)
    elif crash == "items written in part":
        monkeypatch.setattr("deephash.service.items.save_npz", torn)
    elif crash == "before the switch":
        monkeypatch.setattr(store, "save_json", died)
    else:
        monkeypatch.setattr(store, "remove_stale", died)
    with pytest.raises(Died):
        store.compact(state)
    monkeypatch.undo()
    fresh = load_state(folder)
    assert fresh.generation == (1 if crash == "after the switch" else 0)
    same_state(fresh, state)
    again = store.compact(fresh) if fresh.segments else fresh  # compaction completes later
    same_state(load_state(folder), again)


def test_old_segments_are_removed_one_generation_later(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", 20)
    state = store.compact(append(load_state(folder), 2, 1, [0]))
    assert (folder / "append-0-1.npz").exists()  # a reader of generation 0 may still read it
    state = store.compact(append(state, 1, 2, [0]))
    names = sorted(p.name for p in folder.glob("*.npz"))
    assert names == ["append-1-1.npz", "index-1.npz", "index-2.npz", "items-1.npz",
                     "items-2.npz", "outputs-1.npz", "outputs-2.npz"]
    assert read_info(folder)["generation"] == 2 and load_state(folder).size == 23


class RowsEmbedder:
    """Stands in for the model: an "image" is its ``(D,)`` output row already."""

    def outputs(self, images: Any) -> np.ndarray:
        return np.stack(images).astype(np.float32)


def test_searches_keep_answering_during_appends_and_compactions(tmp_path: Path) -> None:
    """Readers search for every item while a writer appends batches of 5 and compacts
    every 15 items: no search fails, and each sees exactly the items of one committed
    state (before or after an add, never part of one)."""
    folder = write_folder(tmp_path / "f", 100, codes=False)
    config = SimpleNamespace(training=SimpleNamespace(distance="euclidean"))
    searcher = Searcher(load_state(folder), RowsEmbedder(), folder / "none.pt",  # type: ignore[arg-type]
                        config, compaction=(15, 1 << 30))  # type: ignore[arg-type]
    query = np.zeros((1, DIM), dtype=np.float32)
    seen: list[int] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                hits = searcher.answer_vectors(query, 10_000)[0].hits
                ids = sorted(hit["id"] for hit in hits)
                assert ids == list(range(len(ids))), "a search saw part of an add"
                seen.append(len(ids))
        except BaseException as exc:
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for batch in range(12):
            outputs = rows(5, 10 + batch, False)[0]
            searcher.add(list(outputs), [(b"x" * 10, "png")] * 5, None)
    finally:
        done.set()
        for thread in readers:
            thread.join()
    assert not failures, failures[0]
    assert set(seen) <= set(range(100, 161, 5)) and len(set(seen)) > 1
    # compactions at 115, 130 and 145 items; at 160 the 15 appended are under 0.1 * 160
    assert searcher.state.size == 160 and searcher.state.generation == 3
    same_state(load_state(folder), searcher.state)


def test_the_rwlock_shares_reading_and_excludes_a_writer() -> None:
    from deephash.service.rwlock import RWLock

    lock, events = RWLock(), []
    first_reading, writer_waiting = threading.Event(), threading.Event()

    def writer() -> None:
        writer_waiting.set()
        with lock.writing():
            events.append("write")

    with lock.reading():
        with lock.reading():  # two readers at once
            first_reading.set()
        thread = threading.Thread(target=writer)
        thread.start()
        writer_waiting.wait()
        thread.join(0.2)
        assert thread.is_alive() and events == []  # the writer waits for the reader
        events.append("read done")
    thread.join(5)
    assert events == ["read done", "write"]
    with lock.writing():
        reader = threading.Thread(target=lambda: lock.reading().__enter__())
        reader.start()
        reader.join(0.2)
        assert reader.is_alive()  # a reader waits for the writer
    reader.join(5)
    assert not reader.is_alive()


def test_a_searcher_grown_by_adds_answers_as_the_folder_loaded_afresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adds grow the live state and code ranker in place (deephash.growing); their answers
    (ids, distances, tie order by continuous outputs) are a fresh load's, and the state
    before an add still answers with its own items."""
    folder = write_folder(tmp_path / "f", 60)
    config = SimpleNamespace(training=SimpleNamespace(distance="euclidean"))
    searcher = Searcher(load_state(folder), RowsEmbedder(), folder / "none.pt",  # type: ignore[arg-type]
                        config, compaction=(10**6, 1 << 40))  # type: ignore[arg-type]
    before = searcher.state
    built: list[int] = []
    init = CodeRanker.__init__
    monkeypatch.setattr(CodeRanker, "__init__",
                        lambda self, codes, *args: built.append(len(codes)) or init(
                            self, codes, *args))
    for batch, labels in enumerate([None, "b", "lemon", None, "a"]):
        outputs = np.random.default_rng(batch).normal(size=(3 + batch, BITS))
        searcher.add(list(outputs), [(b"x" * 10, "png")] * len(outputs), labels)
    assert searcher.state.size == 60 + 3 + 4 + 5 + 6 + 7 and searcher.state.segments == 5
    assert built == []  # the code ranker was extended by each add, never rebuilt
    fresh = Searcher(load_state(folder), RowsEmbedder(), folder / "none.pt",  # type: ignore[arg-type]
                     config)  # type: ignore[arg-type]
    same_state(fresh.state, searcher.state)
    queries, query_outputs = rows(6, 99, True)
    for live, loaded in zip(searcher.answer_vectors(queries, 15, outputs=query_outputs),
                            fresh.answer_vectors(queries, 15, outputs=query_outputs),
                            strict=True):
        assert live.hits == loaded.hits
    old = searcher.answer_vectors(queries, 100, state=before, outputs=query_outputs)
    assert all(hit["id"] < 60 for answer in old for hit in answer.hits)


@pytest.mark.parametrize("codes", [True, False])
def test_a_served_nprobe_is_never_written_at_compaction(tmp_path: Path, codes: bool) -> None:
    """``serve --nprobe`` overrides the folder's saved nprobe for that process only: the
    generation a compaction writes keeps the saved one, while the server goes on with its
    own."""
    folder = write_folder(tmp_path / "f", 200, codes=codes,
                          factory="BIVF4" if codes else "IVF4,Flat", nprobe=2)
    config = SimpleNamespace(training=SimpleNamespace(distance="euclidean"))
    searcher = Searcher(load_state(folder), RowsEmbedder(), folder / "none.pt",  # type: ignore[arg-type]
                        config, compaction=(15, 1 << 30),  # type: ignore[arg-type]
                        settings={"nprobe": 4})
    assert searcher.state.index.settings == {"nprobe": 4}
    for batch in range(5):
        outputs = rows(5, 10 + batch, codes)[1].astype(np.float32)
        searcher.add(list(outputs), [(b"x" * 10, "png")] * 5, None)
    assert searcher.state.generation == 1  # compacted at 220 items
    assert searcher.state.index.settings == {"nprobe": 4}
    reloaded = load_state(folder)
    assert reloaded.generation == 1 and reloaded.index.settings == {"nprobe": 2}


def grown_arrays(state: IndexState) -> dict[str, np.ndarray]:
    """Every array of a state that an add grows."""
    labels = state.items.labels
    found = {"paths": state.items.paths, "local": state.items.local,
             "labels": labels.ids if labels.is_single else labels.multi_hot,
             "vectors": state.vectors, "index ids": state.index.ids}
    if state.outputs is not None:
        found["outputs"] = state.outputs
    if hasattr(state.index, "codes"):  # an exact numpy code index keeps its own
        found["index codes"] = state.index.codes
    return found


@pytest.mark.parametrize(("codes", "multi"), [(True, False), (True, True), (False, False)],
                         ids=["codes", "codes-multi-label", "embeddings"])
def test_after_spare_room_at_load_the_first_add_copies_no_old_row(
        tmp_path: Path, codes: bool, multi: bool) -> None:
    """What serve does at load (``with_spare_room``): the same state, and the first add
    then extends every array in place (without it, that add copies them all: O(N))."""
    n = 2_000
    lists = [[i % 3, (i + 1) % 3] if multi and i % 5 == 0 else [i % 3] for i in range(n)]
    items = Items(np.array([f"c/{i}.png" for i in range(n)]), LabelSet.from_lists(lists, 3),
                  ("a", "b", "c"), np.zeros(n, dtype=bool))
    plain = load_state(write_folder(tmp_path / "plain", n, codes, items=items))
    roomy = with_spare_room(load_state(write_folder(tmp_path / "roomy", n, codes,
                                                    items=items)))
    same_state(roomy, plain)
    assert roomy.items.labels.is_single != multi
    assert not np.shares_memory(roomy.vectors, plain.vectors)
    for state, copies in ((plain, True), (roomy, False)):
        before = grown_arrays(state)
        after = grown_arrays(append(state, 3, seed=1, labels=[1]))
        for name, old in before.items():
            shared = np.shares_memory(after[name][:len(old)], old)
            assert shared != copies, name
            assert np.array_equal(after[name][:len(old)], old) and len(after[name]) == n + 3
    if not codes:
        return
    ranker = CodeRanker(roomy.vectors, BITS, roomy.outputs).with_spare_room()
    more = rows(3, 2, True)
    extended = ranker.extended(more[0], np.concatenate([roomy.outputs, more[1]]))
    assert np.shares_memory(extended.words[:n], ranker.words)
    assert np.array_equal(extended.words, CodeRanker(np.concatenate([roomy.vectors, more[0]]),
                                                     BITS).words)
