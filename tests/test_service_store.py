"""Adding images to an index folder: persisted before the answer, atomically (a crash
mid-write leaves the old state loadable), seen by a fresh load and by ``deephash search``."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import local_client, reseal
from fastapi.testclient import TestClient
from PIL import Image
from test_service_api import build_tree, cli_rows

from deephash.cli import main
from deephash.errors import ConfigError
from deephash.service import store
from deephash.service.app import create_app
from deephash.service.config import ServeConfig
from deephash.service.errors import ApiError
from deephash.service.folder import generation_files, read_info
from deephash.service.items import Items
from deephash.service.searcher import Searcher
from deephash.service.state import load_state


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("tree")).parent


@pytest.fixture
def tree(built: Path, tmp_path: Path) -> Path:
    """A private copy of the data, run and index (adding changes the index folder)."""
    return Path(shutil.copytree(built, tmp_path / "tree"))


def new_images(n: int, seed: int = 1) -> list[bytes]:
    """``n`` PNG files of a colour between the classes'."""
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(n):
        pixels = np.clip(np.array([200, 200, 60]) + rng.normal(0, 20, (18, 22, 3)), 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    return files


def client_of(index: Path) -> TestClient:
    return local_client(create_app(Searcher.open(index), ServeConfig(index=str(index))))


def post_items(client: TestClient, files: list[bytes], label: str | None = None) -> Any:
    data = {} if label is None else {"label": label}
    return client.post("/items", data=data,
                       files=[("images", (f"{i}.png", f, "image/png")) for i, f in
                              enumerate(files)])


def test_added_images_are_searchable_at_once_and_after_a_fresh_load(
        tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tree / "index"
    client = client_of(index)
    files = new_images(2)
    response = post_items(client, files, label="class2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"size": 50, "added": [
        {"id": 48, "label": 2, "class": "class2", "labels": ["class2"], "path": "added/48.png"},
        {"id": 49, "label": 2, "class": "class2", "labels": ["class2"], "path": "added/49.png"}]}
    assert (index / "added" / "48.png").read_bytes() == files[0]
    hits = client.post("/search?k=50", files={"image": ("q.png", files[1])}).json()["results"]
    assert 49 in [hit["id"] for hit in hits if hit["distance"] == 0]
    assert client.get("/items/49").json()["path"] == "added/49.png"
    thumbnail = Image.open(io.BytesIO(client.get("/items/49/thumbnail").content))
    assert np.array_equal(np.array(thumbnail), np.array(Image.open(io.BytesIO(files[1]))))
    # a fresh load (a restarted server) and the command line see the new generation
    fresh = client_of(index)
    assert fresh.get("/info").json()["size"] == 50
    assert fresh.get("/items/48/search?k=50").json() == client.get("/items/48/search?k=50").json()
    rows = cli_rows(index, index / "added" / "49.png", 50, capsys)
    assert (0.0, str((index / "added" / "49.png").resolve())) in rows and len(rows) == 50
    api = client.post("/search?k=50", files={"image": ("q.png", files[1])}).json()["results"]
    assert [row[0] for row in rows] == [hit["distance"] for hit in api]


def test_labels_by_number_by_new_name_and_none(tree: Path) -> None:
    client = client_of(tree / "index")
    assert post_items(client, new_images(1), label="1").json()["added"][0]["class"] == "class1"
    added = post_items(client, new_images(1), label="lemon").json()["added"][0]
    assert added["label"] == 3 and added["class"] == "lemon"
    assert client.get("/info").json()["classes"] == ["class0", "class1", "class2", "lemon"]
    unlabelled = post_items(client, new_images(1)).json()["added"][0]
    assert unlabelled["label"] is None and unlabelled["class"] is None
    assert unlabelled["labels"] == []
    bad = post_items(client, new_images(1), label="7")
    assert bad.status_code == 400 and "is not a class number" in bad.json()["error"]
    assert client.get("/info").json()["size"] == 51


def _old_state_still_loads(index: Path, capsys: pytest.CaptureFixture[str],
                           before: list[tuple[float, str]], query: Path) -> None:
    state = load_state(index)
    assert state.size == 48 and state.generation == 0 and state.index.ntotal == 48
    assert state.outputs is not None and len(state.outputs) == 48
    assert cli_rows(index, query, 48, capsys) == before


@pytest.mark.parametrize("crash", ["an image written in part", "segment written in part",
                                   "images not synced", "segment not synced"])
def test_a_crash_mid_add_leaves_the_old_state(tree: Path, crash: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    index = tree / "index"
    query = tree / "data" / "test" / "class1" / "03.png"
    before = cli_rows(index, query, 48, capsys)
    searcher = Searcher.open(index)
    client = local_client(create_app(searcher, ServeConfig(index=str(index))))

    def torn(path: Path, data: bytes) -> None:
        """What a crash mid-write leaves: half the bytes (an image is written in place, a
        segment under a temporary name)."""
        target = path if path.parent.name == "added" else (
            path.parent / f".{path.name}.crash.tmp")
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(data[:len(data) // 2])
        raise OSError(28, "No space left on device")

    def torn_npz(path: Path, **arrays: Any) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        torn(path, buffer.getvalue())

    def sync_fails(folder: Path) -> None:
        if (folder.name == "added") == (crash == "images not synced"):
            raise OSError(5, "Input/output error")

    if crash == "an image written in part":
        monkeypatch.setattr(store, "write_unnamed", torn)
    elif crash == "segment written in part":
        monkeypatch.setattr("deephash.service.segments.save_npz", torn_npz)
    else:
        monkeypatch.setattr(store, "sync_folder", sync_fails)
    response = post_items(client, new_images(2), label="class0")
    assert response.status_code == 500 and list(response.json()) == ["error"]
    assert read_info(index).get("generation", 0) == 0
    assert not list(index.glob("append-*.npz"))  # a torn or unsynced segment is not listed
    assert searcher.state.size == 48  # the live state did not move either
    assert client.get("/info").json()["size"] == 48
    _old_state_still_loads(index, capsys, before, query)
    monkeypatch.undo()
    retry = new_images(1, seed=9)
    assert post_items(client, retry, label="class0").json()["size"] == 49  # recovers
    assert load_state(index).size == 49
    assert searcher.image_file(48).read_bytes() == retry[0]  # a torn image was overwritten


def test_concurrent_adds_each_get_their_own_ids(tree: Path) -> None:
    index = tree / "index"
    searcher = Searcher.open(index)
    files = new_images(6, seed=3)
    added: list[list[dict[str, Any]]] = []

    def add(data: bytes) -> None:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        added.append(searcher.add([image], [(data, "png")], "class0"))

    threads = [threading.Thread(target=add, args=(data,)) for data in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = sorted(record["id"] for records in added for record in records)
    assert ids == list(range(48, 54))
    fresh = load_state(index)
    assert fresh.size == 54 and fresh.generation == 0 and fresh.segments == 6
    by_path = {record["path"]: record["id"] for records in added for record in records}
    for path, item in by_path.items():  # each file saved under its own id
        assert (index / path).read_bytes() in files and path == f"added/{item}.png"
    assert np.array_equal(fresh.vectors, searcher.state.vectors)


def test_old_generations_are_removed_and_other_writers_are_refused(tree: Path) -> None:
    index = tree / "index"
    first, second = Searcher.open(index), Searcher.open(index)
    for data in new_images(3):
        first.add([Image.open(io.BytesIO(data)).convert("RGB")], [(data, "png")], None)
    names = sorted(p.name for p in index.glob("*.npz"))  # one segment per add, base kept
    assert names == ["append-0-1.npz", "append-0-2.npz", "append-0-3.npz", "index.npz",
                     "items.npz", "outputs.npz"]
    assert read_info(index)["index_file"] == "index.npz"
    data = new_images(1)[0]
    with pytest.raises(ApiError, match="changed on disk since this server loaded it") as info:
        second.add([Image.open(io.BytesIO(data)).convert("RGB")], [(data, "png")], None)
    assert info.value.status == 409 and load_state(index).size == 51


def test_items_written_before_added_images_read_as_indexed(tmp_path: Path) -> None:
    np.savez(tmp_path / "items.npz", paths=np.array(["a.png", "b.png"]), labels=np.array([1, 0]),
             classes=np.array(["x", "y"]))
    items = Items.load(tmp_path / "items.npz")
    assert items.local.tolist() == [False, False] and items.classes == ("x", "y")
    assert items.describe(0) == {"id": 0, "label": 1, "class": "y", "labels": ["y"],
                                 "path": "a.png"}


def test_deephash_search_reads_the_current_generation(tree: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    index = tree / "index"
    searcher = Searcher.open(index)
    data = new_images(1, seed=9)[0]
    searcher.add([Image.open(io.BytesIO(data)).convert("RGB")], [(data, "png")], "class2")
    (tree / "q.png").write_bytes(data)
    capsys.readouterr()
    assert main(["search", str(tree / "q.png"), "--index", str(index), "-k", "49"]) == 0
    out = capsys.readouterr().out
    assert f"{(index / 'added' / '48.png').resolve()}" in out and len(out.splitlines()) == 51
    assert out.splitlines()[-1].startswith("# all ")  # k = every item: no tie is cut


def cut_tie(hamming: np.ndarray) -> tuple[int, int]:
    """The smallest k (and its distance d_k) whose k-th distance is shared by at least 3
    items of which some are left out of the top k."""
    ordered = np.sort(hamming)
    for k in range(2, len(hamming)):
        d_k = int(ordered[k - 1])
        tied, closer = int((hamming == d_k).sum()), int((hamming < d_k).sum())
        if tied >= 3 and closer + tied > k:
            return k, d_k
    raise AssertionError("no cut tie in this index")


def expected_tied(searcher: Searcher, query_output: np.ndarray, hamming: np.ndarray,
                  d_k: int, shown: int) -> list[int]:
    """Ids of the items at d_k nearest the query in the model's continuous distance."""
    from deephash.distances import as_distance

    outputs = searcher.state.outputs
    assert outputs is not None
    tied = np.flatnonzero(hamming == d_k)
    distance = as_distance(searcher.train_config.training.distance)
    scores = distance.ranking_matrix(query_output[None].astype(np.float32),
                                     outputs[tied].astype(np.float32))[0]
    return tied[np.argsort(scores, kind="stable")][:shown].tolist()


def test_a_planted_tie_is_served_in_the_order_of_the_continuous_outputs(tree: Path) -> None:
    """Items at equal Hamming distance whose outputs differ: by id and by upload, the tied
    results shown are those nearest in the continuous outputs, in that order, wherever
    they sit in the pool."""
    from deephash.hashing.codes import hamming_matrix
    from deephash.service.outputs import save_outputs

    index = tree / "index"
    state = load_state(index)
    planted = np.random.default_rng(5).normal(size=state.outputs.shape)  # type: ignore[union-attr]
    save_outputs(index / read_info(index)["outputs_file"], planted)
    reseal(index)
    searcher = Searcher.open(index)
    client = local_client(create_app(searcher, ServeConfig(index=str(index))))
    item = 21
    hamming = hamming_matrix(state.vectors[item:item + 1], state.vectors)[0]
    k, d_k = cut_tie(hamming)
    answer = client.get(f"/items/{item}/search?k={k}").json()
    closer = int((hamming < d_k).sum())
    ties = answer["ties"]
    assert ties == {"distance": d_k, "count": int((hamming == d_k).sum()), "shown": k - closer,
                    "order": "continuous outputs"}
    hits = answer["results"]
    assert [hit["distance"] for hit in hits] == sorted(hamming)[:k]
    query_output = searcher.state.outputs[item]  # type: ignore[index]
    expected = expected_tied(searcher, query_output, hamming, d_k, k - closer)
    assert [hit["id"] for hit in hits[closer:]] == expected
    assert expected != np.flatnonzero(hamming == d_k)[:k - closer].tolist()  # not pool order
    # by upload: the query's own outputs (from the model) against the planted ones
    path = tree / "data" / "test" / "class1" / "03.png"
    image = Image.open(path).convert("RGB")
    query_output = searcher.outputs([image])[0]
    hamming = hamming_matrix(searcher.embed([image]), state.vectors)[0]
    k, d_k = cut_tie(hamming)
    upload = client.post(f"/search?k={k}", files={"image": ("q.png", path.read_bytes())}).json()
    closer = int((hamming < d_k).sum())
    assert upload["ties"]["count"] == int((hamming == d_k).sum())
    assert [hit["id"] for hit in upload["results"][closer:]] == expected_tied(
        searcher, query_output, hamming, d_k, k - closer)


def random_tie_case(codes: np.ndarray) -> tuple[int, int, list[int], int]:
    """An item whose cut tie (k, d_k) the seeded random keys order otherwise than pool
    order: the item, k, the tied ids shown in that order, and how many are shown."""
    from deephash.hashing.codes import as_words, hamming_matrix
    from deephash.index.rerank import TIE_SEED, random_keys

    for item in range(len(codes)):
        hamming = hamming_matrix(codes[item:item + 1], codes)[0]
        k, d_k = cut_tie(hamming)
        tied = np.flatnonzero(hamming == d_k)
        shown = k - int((hamming < d_k).sum())
        keys = random_keys(tied, as_words(codes[item:item + 1])[0], TIE_SEED)
        expected = tied[np.argsort(keys)][:shown].tolist()
        if expected != tied[:shown].tolist():
            return item, k, expected, shown
    raise AssertionError("every cut tie is in pool order at random: pick another seed")


def test_rerank_none_breaks_ties_in_the_seeded_random_order(
        tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tree / "index"
    searcher = Searcher.open(index, rerank="none")
    assert searcher.state.outputs is not None  # kept, and not used
    client = local_client(create_app(searcher, ServeConfig(index=str(index), rerank="none")))
    item, k, expected, shown = random_tie_case(searcher.state.vectors)
    answer = client.get(f"/items/{item}/search?k={k}").json()
    assert answer["ties"]["order"] == "random" and answer["ties"]["shown"] == shown
    assert [hit["id"] for hit in answer["results"][k - shown:]] == expected
    assert client.get(f"/items/{item}/search?k={k}").json() == answer  # deterministic
    capsys.readouterr()
    query = tree / "data" / "test" / "class0" / "01.png"
    assert main(["search", str(query), "--index", str(index), "--rerank", "none"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith("chosen by a seeded random order")


def test_an_index_folder_without_outputs_still_serves_with_random_ties(
        tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder written before the outputs were kept: loads, serves, and breaks ties by the
    seeded random keys (deterministic), not by pool order."""
    import json

    index = tree / "index"
    info = read_info(index)
    (index / info.pop("outputs_file")).unlink()
    (index / "index.json").write_text(json.dumps(info))
    searcher = Searcher.open(index)
    assert searcher.state.outputs is None
    client = local_client(create_app(searcher, ServeConfig(index=str(index))))
    item, k, expected, shown = random_tie_case(searcher.state.vectors)
    answer = client.get(f"/items/{item}/search?k={k}").json()
    assert answer["ties"]["order"] == "random"
    assert [hit["id"] for hit in answer["results"][k - shown:]] == expected
    assert client.get(f"/items/{item}/search?k={k}").json() == answer  # deterministic
    query = tree / "data" / "test" / "class0" / "01.png"
    assert cli_rows(index, query, 48, capsys)  # deephash search too
    data = new_images(1)[0]  # adding keeps a folder without outputs without them
    searcher.add([Image.open(io.BytesIO(data)).convert("RGB")], [(data, "png")], None)
    assert "outputs_file" not in read_info(index) and load_state(index).outputs is None


def test_added_images_append_their_outputs(tree: Path) -> None:
    index = tree / "index"
    searcher = Searcher.open(index)
    before = searcher.state.outputs
    assert before is not None and before.dtype == np.float16 and len(before) == 48
    files = new_images(2, seed=4)
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in files]
    searcher.add(images, [(data, "png") for data in files], "class1")
    fresh = load_state(index)
    assert read_info(index)["outputs_file"] == "outputs.npz" and fresh.outputs is not None
    assert np.load(index / "append-0-1.npz")["outputs"].dtype == np.float16  # in the segment
    store.compact(searcher.state)  # and in the next generation's outputs file
    assert generation_files(read_info(index)) == ["index-1.npz", "items-1.npz",
                                                  "outputs-1.npz"]
    fresh = load_state(index)
    assert fresh.outputs is not None and fresh.segments == 0
    assert np.array_equal(fresh.outputs[:48], before)
    assert np.array_equal(fresh.outputs[48:], searcher.outputs(images).astype(np.float16))
    assert np.array_equal(fresh.outputs, searcher.state.outputs)  # type: ignore[arg-type]
    # the added rows' codes are the signs of their outputs
    assert np.array_equal(np.packbits(searcher.outputs(images) >= 0, axis=1), fresh.vectors[48:])


def multi_label_copy(index: Path, lists: list[list[int]], classes: tuple[str, ...]) -> None:
    """Give the items of ``index`` the label lists ``lists`` (one per item) over
    ``classes``, as a multi-label data set's index holds them, and reseal the folder."""
    from deephash.labels import LabelSet

    items_file = index / read_info(index).get("items_file", "items.npz")
    items = Items.load(items_file)
    Items(items.paths, LabelSet.from_lists(lists, len(classes)), classes,
          items.local).save(items_file)
    reseal(index)


def test_shares_label_by_hand() -> None:
    """A hit sharing one of the query's two labels counts; one sharing none does not; an
    unlabelled hit, or a query without labels, is unknown (None), never wrong."""
    from deephash.labels import LabelSet

    items = Items(np.array(["a", "b", "c", "d", "e"]),
                  LabelSet.from_lists([[0, 1], [1], [2], [], [0, 2]], 3), ("x", "y", "z"),
                  np.zeros(5, dtype=bool))
    query = LabelSet.from_lists([[0, 2]], 3)
    assert items.shares_label(query, np.array([0, 1, 2, 3, 4])) == [True, False, True, None,
                                                                    True]
    assert items.shares_label(query, np.array([], dtype=np.int64)) == []
    unlabelled = LabelSet.from_lists([[]], 3)
    assert items.shares_label(unlabelled, np.array([0, 3])) == [None, None]
    assert items.describe(0) == {"id": 0, "label": None, "class": None, "labels": ["x", "y"],
                                 "path": "a"}
    assert items.describe(1)["label"] == 1 and items.describe(1)["class"] == "y"
    assert items.describe(3)["labels"] == [] and items.multi_label


def test_a_multi_label_index_lists_labels_and_frames_relevance_as_a_shared_label(
        tree: Path) -> None:
    index = tree / "index"
    rng = np.random.default_rng(3)
    lists = [sorted(set(rng.choice(4, rng.integers(0, 3)).tolist())) for _ in range(48)]
    lists[5], lists[6] = [0, 3], []
    names = ("sky", "tree", "water", "car")
    multi_label_copy(index, lists, names)
    client = client_of(index)
    info = client.get("/info").json()
    assert info["multi_label"] is True and info["classes"] == list(names)
    assert info["labelled"] == sum(1 for labels in lists if labels)
    record = client.get("/items/5").json()
    assert record == {"id": 5, "label": None, "class": None, "labels": ["sky", "car"],
                      "path": record["path"]}
    answer = client.get("/items/5/search?k=48").json()
    assert answer["query"] == record and len(answer["results"]) == 48
    for hit in answer["results"]:  # brute force: set intersection of the lists
        assert hit["labels"] == [names[c] for c in lists[hit["id"]]]
        expected = bool(set(lists[hit["id"]]) & {0, 3}) if lists[hit["id"]] else None
        assert hit["shares_label"] == expected
    assert {hit["shares_label"] for hit in answer["results"]} == {True, False, None}
    unlabelled = client.get("/items/6/search?k=48").json()["results"]
    assert all(hit["shares_label"] is None for hit in unlabelled)


def test_added_images_take_several_labels_or_none(tree: Path) -> None:
    index = tree / "index"
    client = client_of(index)
    response = client.post("/items", data={"label": ["class2", "lemon", "0", "class2"]},
                           files=[("images", ("a.png", new_images(1)[0], "image/png"))])
    assert response.status_code == 200, response.text
    added = response.json()["added"][0]
    assert added == {"id": 48, "label": None, "class": None,
                     "labels": ["class0", "class2", "lemon"], "path": "added/48.png"}
    info = client.get("/info").json()
    assert info["multi_label"] is True and info["classes"][-1] == "lemon"
    # items.npz now holds a multi-hot matrix, which a fresh load reads back
    assert np.load(index / "append-0-1.npz")["labels"].shape == (1, 4)  # its row only
    stored = load_state(index).items.labels.as_array()
    assert stored.dtype == bool and stored.shape == (49, 4)
    assert stored[48].tolist() == [True, False, True, True]
    assert stored[:48].sum(axis=1).tolist() == [1] * 48
    fresh = client_of(index)
    assert fresh.get("/items/48").json() == added
    assert fresh.get("/items/0").json()["labels"] == ["class0"]
    none = post_items(fresh, new_images(1, seed=2)).json()["added"][0]
    assert none["labels"] == [] and none["label"] is None
    hits = fresh.get("/items/48/search?k=50").json()["results"]
    for hit in hits:  # class0 and class2 items share a label with item 48; class1 ones do not
        expected = None if not hit["labels"] else bool(
            {"class0", "class2", "lemon"} & set(hit["labels"]))
        assert hit["shares_label"] == expected


def test_a_single_label_items_file_is_written_and_read_as_before(tree: Path,
                                                                 tmp_path: Path) -> None:
    """An index of single-label data keeps ``(N,)`` int64 ids (what folders written before
    label sets hold): loading and saving gives the same bytes; adding a single label keeps
    ids."""
    index = tree / "index"
    stored = np.load(index / "items.npz")
    assert stored["labels"].dtype == np.int64 and stored["labels"].shape == (48,)
    items = Items.load(index / "items.npz")
    assert items.labels.is_single and not items.multi_label
    items.save(tmp_path / "again.npz")
    again = np.load(tmp_path / "again.npz")
    assert sorted(again.files) == sorted(stored.files)
    for name in stored.files:
        assert np.array_equal(again[name], stored[name]) and again[name].dtype == stored[name].dtype
    client = client_of(index)
    post_items(client, new_images(1), label="class1")
    post_items(client, new_images(1))
    after = load_state(index).items.labels.as_array()
    assert after.dtype == np.int64 and after.tolist()[-2:] == [1, -1]
    assert client.get("/info").json()["multi_label"] is False


@pytest.mark.parametrize("labels", [np.ones((2, 3), dtype=bool), np.ones((2, 2), np.float32),
                                    np.array([0, -2])],
                         ids=["multi-hot over other classes", "float multi-hot", "ids below -1"])
def test_items_files_with_bad_labels_are_refused(tmp_path: Path, labels: np.ndarray) -> None:
    np.savez(tmp_path / "items.npz", labels=labels, paths=np.array(["a.png", "b.png"]),
             classes=np.array(["x", "y"]))
    with pytest.raises(ConfigError, match=r"cannot read .*rebuild with deephash index"):
        Items.load(tmp_path / "items.npz")


def test_deephash_search_lists_each_hits_labels_and_frames_by_a_shared_label(
        tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    index = tree / "index"
    lists = [[i % 3] + ([3] if i % 4 == 0 else []) for i in range(48)]  # class, maybe "car"
    names = ("sky", "tree", "water", "car")
    multi_label_copy(index, lists, names)
    drawn: list[Any] = []
    monkeypatch.setattr("deephash.viz.search.plot_results",
                        lambda query, rows, label, path: drawn.append((rows, label)))
    query = tree / "data" / "test" / "class1" / "02.png"
    capsys.readouterr()
    assert main(["search", str(query), "--index", str(index), "-k", "48", "--label", "tree,car",
                 "--show", str(tree / "show.png")]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()[1:]
             if not line.startswith("#")]
    items = Items.load(index / "items.npz")
    by_path = {str((tree / "data" / p).resolve()): i for i, p in enumerate(items.paths)}
    for row in lines:
        assert row[2] == ",".join(names[c] for c in lists[by_path[row[3]]])
    rows, label = drawn[0]
    assert label == "tree,car" and len(rows) == 48
    for row in rows:  # relevant: shares tree (1) or car (3) with the query
        assert row["relevant"] == bool({1, 3} & set(lists[by_path[row["path"]]]))
    assert {row["relevant"] for row in rows} == {True, False}


def test_multi_label_list_files_index_and_serve_their_labels(
        tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """List files (DeepHash-pytorch layout) with two labels on some lines, indexed by
    ``deephash index``: items.npz holds their multi-hot matrix, the API and search list
    the names, and relevance is a shared label."""
    data = tree / "data"
    images = sorted(p.relative_to(data).as_posix() for p in data.glob("*/*/*.png"))
    rows = {path: [int(path.split("/")[1][-1] == str(c)) for c in range(3)] + [int(i % 4 == 0)]
            for i, path in enumerate(images)}
    lines = {name: "".join(f"{p} {' '.join(map(str, rows[p]))}\n" for p in images if
                           (name == "test") == p.startswith("test/"))
             for name in ("train", "test", "database")}
    for name, text in lines.items():
        (data / f"{name}.txt").write_text(text)
    (data / "classes.txt").write_text("red\ngreen\nblue\nsquare\n")
    out = tree / "lists-index"
    assert main(["index", "--checkpoint", str(tree / "run" / "bits-16" / "best.pt"),
                 "--data-dir", str(data), "--out", str(out), "--cache-dir",
                 str(tree / "c")]) == 0
    stored = np.load(out / "items.npz")
    assert stored["labels"].dtype == bool and stored["labels"].shape == (48, 4)
    assert stored["classes"].tolist() == ["red", "green", "blue", "square"]
    expected = {p: [n for n, v in zip(("red", "green", "blue", "square"), rows[p], strict=True)
                    if v] for p in images}
    client = client_of(out)
    assert client.get("/info").json()["multi_label"] is True
    item = next(i for i, p in enumerate(stored["paths"]) if len(expected[str(p)]) == 2)
    answer = client.get(f"/items/{item}/search?k=48").json()
    assert answer["query"]["labels"] == expected[answer["query"]["path"]]
    query = set(answer["query"]["labels"])
    for hit in answer["results"]:
        assert hit["labels"] == expected[hit["path"]]
        assert hit["shares_label"] == bool(query & set(hit["labels"]))
    capsys.readouterr()
    assert main(["search", str(data / answer["query"]["path"]), "--index", str(out),
                 "-k", "5"]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines()[1:]
               if not line.startswith("#")]
    for row in printed:
        path = Path(row[3]).relative_to(data.resolve()).as_posix()
        assert row[2] == ",".join(expected[path])


def test_the_images_of_an_add_are_written_at_once_and_a_failure_is_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [f"added/{i}.png" for i in range(40)]
    images = [bytes([i]) * (100 + i) for i in range(40)]
    store.write_images(tmp_path, paths, images)
    assert [(tmp_path / p).read_bytes() for p in paths] == images
    written: list[str] = []

    def fails_on_seven(path: Path, data: bytes) -> None:
        if path.name == "7.png":
            raise OSError(28, "No space left on device")
        time.sleep(0.01)
        written.append(path.name)

    monkeypatch.setattr(store, "write_unnamed", fails_on_seven)
    with pytest.raises(OSError, match="No space"):
        store.write_images(tmp_path, paths, images)
    ended = list(written)
    time.sleep(0.1)
    assert written == ended and "7.png" not in written  # none still under way
