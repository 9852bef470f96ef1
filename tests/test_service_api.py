"""deephash serve's HTTP API through FastAPI's TestClient, on a tiny index built here: every
endpoint, results equal to ``deephash search``, and every bad input a 4xx JSON error."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_image_folder, tiny_run_args
from fastapi.testclient import TestClient
from PIL import Image

from deephash.cli import main
from deephash.service.app import STATIC, create_app
from deephash.service.config import ServeConfig
from deephash.service.searcher import Searcher
from deephash.studies.search import SearchConfig, search_image


def build_tree(tree: Path, command: str = "hash") -> Path:
    """``tree/data`` (3 classes x 16 images), a tiny model in ``tree/run`` and its index
    folder ``tree/index``; returns the index folder."""
    data = make_image_folder(tree / "data", n_classes=3, n_train=12, n_test=4)
    extra = ["--bits", "16"] if command == "hash" else ["--embedding-dim", "8"]
    assert main([command, "--out", str(tree / "run"), *extra,
                 *tiny_run_args(data, tree / "c", epochs=1)]) == 0
    checkpoint = tree / "run" / ("bits-16" if command == "hash" else "") / "best.pt"
    assert main(["index", "--checkpoint", str(checkpoint), "--data-dir", str(data),
                 "--out", str(tree / "index"), "--cache-dir", str(tree / "c")]) == 0
    return tree / "index"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def searcher(index: Path) -> Searcher:
    return Searcher.open(index)


@pytest.fixture(scope="module")
def client(searcher: Searcher, index: Path) -> Iterator[TestClient]:
    settings = ServeConfig(index=str(index), max_upload_bytes=60_000, max_pixels=1_000_000,
                           max_batch=4)
    with TestClient(create_app(searcher, settings)) as client:
        yield client


def png(pixels: np.ndarray | None = None, size: tuple[int, int] = (24, 20)) -> bytes:
    image = (Image.fromarray(pixels) if pixels is not None
             else Image.new("RGB", size, (90, 120, 200)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(path: Path, field: str = "image") -> dict[str, Any]:
    return {"files": {field: (path.name, path.read_bytes(), "image/png")}}


def cli_rows(index: Path, query: Path, k: int, capsys: pytest.CaptureFixture[str]
             ) -> list[tuple[float, str]]:
    """``deephash search QUERY --index INDEX -k K``'s printed (distance, path) rows."""
    capsys.readouterr()
    assert main(["search", str(query), "--index", str(index), "-k", str(k)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    return [(float(line.split()[1]), line.split()[3]) for line in lines
            if not line.startswith("#")]


def test_health_info_and_the_openapi_schema(client: TestClient, index: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["kind"] == "codes" and info["bits"] == info["dim"] == 16
    assert info["size"] == 48 and info["index"] == "BFlat"
    assert info["classes"] == ["class0", "class1", "class2"]
    assert info["max_k"] == 48 and info["max_upload_bytes"] == 60_000  # k capped by the size
    assert Path(info["checkpoint"]) == (index.parent / "run/bits-16/best.pt").resolve()
    assert info["backbone"] == "efficientnet_lite0"
    schema = client.get("/openapi.json").json()
    uploads = [path for path, ops in schema["paths"].items() if "search" in path
               and "multipart/form-data" in ops.get("post", {}).get("requestBody", {})
               .get("content", {})]
    assert uploads == ["/search", "/search/batch"]


@pytest.mark.parametrize(("query", "k"), [("test/class1/02.png", 5), ("train/class2/07.png", 48),
                                          ("test/class0/01.png", 13)])
def test_upload_search_gives_what_deephash_search_prints(
        client: TestClient, index: Path, query: str, k: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = index.parent / "data" / query
    hits = client.post(f"/search?k={k}", **upload(path)).json()["results"]
    root = (index.parent / "data").resolve()
    assert [(hit["distance"], str(root / hit["path"])) for hit in hits] == \
        cli_rows(index, path, k, capsys)
    assert len(hits) == k and query in [hit["path"] for hit in hits if hit["distance"] == 0]
    assert all(hit["class"] == f"class{hit['label']}" for hit in hits)


def test_radius_keeps_the_hits_within_it(client: TestClient, index: Path) -> None:
    path = index.parent / "data" / "test" / "class2" / "00.png"
    everything = client.post("/search?k=48", **upload(path)).json()["results"]
    distances = sorted({hit["distance"] for hit in everything})
    radius = int(distances[1])  # the second distinct distance: some in, some out
    within = client.post(f"/search?k=48&radius={radius}", **upload(path)).json()["results"]
    assert within == [hit for hit in everything if hit["distance"] <= radius]
    assert 0 < len(within) < 48
    capped = client.post(f"/search?k=2&radius={radius}", **upload(path)).json()["results"]
    assert capped == within[:2]
    by_id = client.get(f"/items/{within[0]['id']}/search?k=48&radius=0").json()["results"]
    assert by_id and all(hit["distance"] == 0 for hit in by_id)


def test_batch_search_answers_each_image_in_upload_order_from_one_forward_pass(
        client: TestClient, searcher: Searcher, index: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [index.parent / "data" / p for p in ("test/class0/00.png", "test/class2/03.png",
                                                 "train/class1/04.png")]
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in paths]
    backbone, batches = searcher.embedder.backbone, []

    def counted(x: Any) -> Any:
        batches.append(len(x))
        return backbone(x)

    monkeypatch.setattr(searcher.embedder, "backbone", counted)
    batch = client.post("/search/batch?k=6", files=files).json()["results"]
    assert batches == [3]
    singles = [client.post("/search?k=6", **upload(p)).json()["results"] for p in paths]
    assert batch == singles


def test_item_record_search_and_thumbnail(client: TestClient, searcher: Searcher,
                                          index: Path) -> None:
    record = client.get("/items/21").json()
    assert record == {"id": 21, "label": 1, "class": "class1", "path": "train/class1/09.png"}
    answer = client.get("/items/21/search?k=48").json()
    assert answer["query"] == record
    itself = [hit for hit in answer["results"] if hit["id"] == 21]
    assert itself and itself[0]["distance"] == 0
    # by id is the search of the item's stored vector, which is the index's own row
    stored = searcher.state.vectors[21:22]
    assert np.array_equal(stored, searcher.state.index.index.reconstruct_n(21, 1))
    outputs = searcher.state.outputs
    assert outputs is not None  # and its continuous outputs, which order the tied
    assert answer["results"] == searcher.search_vectors(stored, 48, outputs=outputs[21:22])[0]
    assert answer["ties"]["order"] == "continuous outputs" and answer["ties"]["shown"] >= 1
    response = client.get("/items/21/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    thumbnail = Image.open(io.BytesIO(response.content))
    original = Image.open(index.parent / "data" / record["path"])
    assert thumbnail.size == original.size  # small images are served at their size
    assert np.array_equal(np.array(thumbnail), np.array(original.convert("RGB")))


def test_the_page_and_its_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.content == (STATIC / "index.html").read_bytes()
    for name in sorted(p.name for p in STATIC.iterdir() if p.is_file()):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.content == (STATIC / name).read_bytes()
    missing = client.get("/static/no-such-file.js")
    assert missing.status_code == 404 and "error" in missing.json()


def _truncated(index: Path) -> bytes:
    data = (index.parent / "data" / "test" / "class0" / "00.png").read_bytes()
    return data[: len(data) // 2]


def _noise(side: int) -> bytes:
    return png(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))


def _chunked(data: bytes) -> Iterator[bytes]:
    """A multipart body sent without Content-Length (chunked), so only the bytes count."""
    yield (b'--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
           b"Content-Type: image/png\r\n\r\n")
    for start in range(0, len(data), 8192):
        yield data[start:start + 8192]
    yield b"\r\n--xx--\r\n"


#: name -> (method, url, request keyword arguments (built from the index folder), status)
BAD: dict[str, tuple[str, str, Any, int]] = {
    "not an image": ("post", "/search", lambda i: {"files": {"image": ("a.png", b"hello")}}, 400),
    "truncated image": ("post", "/search",
                        lambda i: {"files": {"image": ("a.png", _truncated(i))}}, 400),
    "empty file": ("post", "/search", lambda i: {"files": {"image": ("a.png", b"")}}, 400),
    "empty body": ("post", "/search", lambda i: {"content": b""}, 415),
    "empty multipart body": ("post", "/search", lambda i: {
        "content": b"", "headers": {"content-type": "multipart/form-data; boundary=xx"}}, 422),
    "no boundary": ("post", "/search", lambda i: {
        "content": b"x", "headers": {"content-type": "multipart/form-data"}}, 400),
    "file over the byte limit": ("post", "/search",
                                 lambda i: {"files": {"image": ("a.png", _noise(200))}}, 413),
    "chunked body over the byte limit": ("post", "/search", lambda i: {
        "content": _chunked(_noise(200)),
        "headers": {"content-type": "multipart/form-data; boundary=xx"}}, 413),
    "too many pixels": ("post", "/search",
                        lambda i: {"files": {"image": ("a.png", png(size=(1500, 1000)))}}, 413),
    "k zero": ("post", "/search?k=0", lambda i: upload(i.parent / "data/test/class0/00.png"), 422),
    "k above the index size": ("post", "/search?k=49",
                               lambda i: upload(i.parent / "data/test/class0/00.png"), 422),
    "k not a number": ("get", "/items/3/search?k=ten", lambda i: {}, 422),
    "k too large by id": ("get", "/items/3/search?k=1001", lambda i: {}, 422),
    "radius above the bits": ("get", "/items/3/search?radius=17", lambda i: {}, 422),
    "negative radius": ("get", "/items/3/search?radius=-1", lambda i: {}, 422),
    "unknown id": ("get", "/items/48", lambda i: {}, 404),
    "unknown id search": ("get", "/items/4800/search", lambda i: {}, 404),
    "negative id thumbnail": ("get", "/items/-1/thumbnail", lambda i: {}, 404),
    "id not a number": ("get", "/items/abc", lambda i: {}, 422),
    "json body": ("post", "/search", lambda i: {"json": {"image": "cat.png"}}, 415),
    "form without the image field": ("post", "/search", lambda i: {
        "files": {"picture": ("a.png", png())}}, 422),
    "too many images in a batch": ("post", "/search/batch", lambda i: {
        "files": [("images", (f"{n}.png", png())) for n in range(5)]}, 413),
    "one bad image in a batch": ("post", "/search/batch", lambda i: {
        "files": [("images", ("a.png", png())), ("images", ("b.png", b"GIF89a"))]}, 400),
    "bad Content-Length": ("post", "/search", lambda i: {
        "content": b"x", "headers": {"content-length": "many",
                                     "content-type": "multipart/form-data; boundary=xx"}}, 400),
    "unknown path": ("get", "/search/everything", lambda i: {}, 404),
    "wrong method": ("delete", "/items/3", lambda i: {}, 405),
    "add without images": ("post", "/items", lambda i: {"data": {"label": "class0"}}, 415),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_json_error_and_the_server_keeps_answering(
        client: TestClient, index: Path, case: str) -> None:
    method, url, arguments, status = BAD[case]
    response = getattr(client, method)(url, **arguments(index))
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    assert body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/info").json()["size"] == 48  # nothing was added


def test_an_unexpected_fault_is_a_500_json_error_and_the_server_goes_on(
        client: TestClient, searcher: Searcher, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(searcher, "answer_item", broken)
    response = client.get("/items/3/search")
    assert response.status_code == 500 and list(response.json()) == ["error"]
    assert "a bug" not in response.text  # no internals in the answer; the log has them
    monkeypatch.undo()
    assert client.get("/items/3/search?k=2").status_code == 200


def test_float_embeddings_search_as_the_command_does_and_refuse_a_radius(
        tmp_path: Path) -> None:
    index = build_tree(tmp_path, command="train")
    client = TestClient(create_app(Searcher.open(index), ServeConfig(index=str(index))))
    assert client.get("/info").json()["kind"] == "embeddings"
    assert client.get("/info").json()["bits"] is None
    response = client.get("/items/0/search?k=3&radius=2")
    assert response.status_code == 422 and "float embeddings" in response.json()["error"]
    hits = client.get("/items/0/search?k=3").json()["results"]
    assert hits[0]["id"] == 0 and hits[0]["distance"] < 1e-6
    query = tmp_path / "data" / "test" / "class2" / "01.png"
    rows = search_image(SearchConfig(image=str(query), index=str(index), k=7))
    hits = client.post("/search?k=7", **upload(query)).json()["results"]
    assert [(hit["distance"], hit["path"]) for hit in hits] == [  # float distances, bit for bit
        (row["distance"], str(Path(row["path"]).relative_to((tmp_path / "data").resolve())))
        for row in rows]


def test_thumbnails_of_a_data_set_that_is_not_a_folder(index: Path, tmp_path: Path) -> None:
    """An index of a pack file: items are the pack's rows, read from the pack."""
    tree = index.parent
    assert main(["pack", str(tree / "data"), str(tmp_path / "data.pack")]) == 0
    assert main(["index", "--checkpoint", str(tree / "run" / "bits-16" / "best.pt"),
                 "--data-dir", str(tmp_path / "data.pack"), "--out", str(tmp_path / "index"),
                 "--cache-dir", str(tree / "c")]) == 0
    client = TestClient(create_app(Searcher.open(tmp_path / "index"),
                                   ServeConfig(index=str(tmp_path / "index"))))
    record = client.get("/items/30").json()
    assert record["path"].endswith("data.pack:train/class2/06.png")
    thumbnail = Image.open(io.BytesIO(client.get("/items/30/thumbnail").content))
    original = Image.open(tree / "data" / "train" / "class2" / "06.png").convert("RGB")
    assert np.array_equal(np.array(thumbnail), np.array(original))


def test_serve_refuses_a_bad_folder_in_one_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    threads = torch.get_num_threads()
    assert main(["serve", "--index", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an index folder (run deephash index)" in err[0]
    assert torch.get_num_threads() == threads  # the process's threads untouched
    assert main(["serve", "--index", str(tmp_path), "--port", "70000"]) == 2
    assert "--port must be at most 65535" in capsys.readouterr().err


def test_serve_without_the_extra_says_what_to_install(
        index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    assert main(["serve", "--index", str(index)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'deephash[serve]'" in err[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_deephash_serve_answers_on_localhost(index: Path) -> None:
    """The real command on uvicorn: binds 127.0.0.1 by default and answers a search."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "deephash.cli", "serve", "--index",
                               str(index), "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert json.load(r) == {"status": "ok"}
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, \
                    server.stdout.read().decode() if server.stdout else ""
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/5/search?k=3",
                                    timeout=10) as r:
            assert [hit["id"] for hit in json.load(r)["results"]].count(5) == 1
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_search_leaves_the_process_thread_count_as_it_was() -> None:
    """faiss and torch share OpenMP: the one-thread search must not leave torch (and every
    later computation of the process) on one thread. A fresh process: torch's count is
    OpenMP's until someone sets it."""
    code = ("import torch\n"
            "from deephash.service.searcher import one_openmp_thread\n"
            "before = torch.get_num_threads()\n"
            "with one_openmp_thread():\n"
            "    pass\n"
            "print(before, torch.get_num_threads())\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True)
    assert result.stdout.split() == ["2", "2"]
