"""deephash serve's HTTP API through FastAPI's TestClient, on a tiny index built here: every
endpoint, results equal to ``deephash search``, and every bad input a 4xx JSON error."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import local_client, make_image_folder, reseal, tiny_run_args
from fastapi.testclient import TestClient
from PIL import Image

from deephash.cli import main
from deephash.data.decode import decode_rgb
from deephash.errors import ConfigError
from deephash.service.app import STATIC, create_app
from deephash.service.config import ServeConfig
from deephash.service.downscale import decode_query, decoded_pixels, reduction
from deephash.service.errors import ApiError
from deephash.service.folder import read_info
from deephash.service.items import Items
from deephash.service.memory import PixelBudget
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
    with local_client(create_app(searcher, settings)) as client:
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
    assert info["checkpoint"] == "bits-16/best.pt"  # its folder and name: no server paths
    assert str(index.parent) not in json.dumps(info)
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
    assert all(hit["class"] == f"class{hit['label']}" and hit["labels"] == [hit["class"]]
               for hit in hits)
    assert all(hit["shares_label"] is None for hit in hits)  # an upload's labels are unknown


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
    assert record == {"id": 21, "label": 1, "class": "class1", "labels": ["class1"],
                      "path": "train/class1/09.png"}
    answer = client.get("/items/21/search?k=48").json()
    assert answer["query"] == record
    # relevance as the metrics define it: same class (single-label data)
    assert [hit["shares_label"] for hit in answer["results"]] == \
        [hit["label"] == 1 for hit in answer["results"]]
    itself = [hit for hit in answer["results"] if hit["id"] == 21]
    assert itself and itself[0]["distance"] == 0
    # by id is the search of the item's stored vector, which is the index's own row
    stored = searcher.state.vectors[21:22]
    assert np.array_equal(stored, searcher.state.index.index.reconstruct_n(21, 1))
    outputs = searcher.state.outputs
    assert outputs is not None  # and its continuous outputs, which order the tied
    labels = searcher.state.items.labels[np.array([21])]
    assert answer["results"] == searcher.search_vectors(stored, 48, outputs=outputs[21:22],
                                                        labels=labels)[0]
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
    client = local_client(create_app(Searcher.open(index), ServeConfig(index=str(index))))
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
    client = local_client(create_app(Searcher.open(tmp_path / "index"),
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


# --- the trust boundary: Host, origin, the write header, the token ---------------------

TOKEN = "a-test-token-of-24-chars"
SEARCH = ("post", "/search", {"files": {"image": ("a.png", png())}})
ADD = ("post", "/items", {"files": {"images": ("a.png", png())}})
INFO = ("get", "/info", {})
WRITE = {"x-requested-with": "test"}
SAME = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}

#: name -> (ServeConfig fields, request, request headers, status); the client is
#: ``http://127.0.0.1:8000`` (the default bind) and sends no header of its own
ACCESS: dict[str, tuple[dict[str, Any], tuple[str, str, dict[str, Any]], dict[str, str], int]] = {
    "foreign Host (DNS rebinding)": ({}, INFO, {"host": "evil.example:8000"}, 400),
    "foreign Host on the page": ({}, ("get", "/", {}), {"host": "evil.example"}, 400),
    "foreign Host, search": ({}, SEARCH, {"host": "rebind.example:8000"}, 400),
    "foreign Host, add": ({}, ADD, {"host": "rebind.example:8000", **WRITE}, 400),
    "localhost": ({}, INFO, {"host": "localhost:8000"}, 200),
    "IPv6 loopback": ({}, INFO, {"host": "[::1]:8000"}, 200),
    "the bound name": ({"host": "box.lan"}, INFO, {"host": "box.lan:8000"}, 200),
    "another name than the bound one": ({"host": "box.lan"}, INFO, {"host": "x.lan"}, 400),
    "an address when bound to all": ({"host": "0.0.0.0"}, INFO, {"host": "10.1.2.3:8000"}, 200),
    "a name when bound to all": ({"host": "0.0.0.0"}, INFO, {"host": "evil.example"}, 400),
    "allowed host": ({"allowed_host": ("search.example.org",)}, INFO,
                     {"host": "search.example.org"}, 200),
    "allowed host on another port": ({"allowed_host": ("search.example.org:443",)}, INFO,
                                     {"host": "search.example.org:8443"}, 400),
    "same-origin search": ({}, SEARCH, SAME, 200),
    "search without origin headers (curl)": ({}, SEARCH, {}, 200),
    "cross-origin search": ({}, SEARCH, {"origin": "http://127.0.0.1:9000"}, 403),
    "cross-origin add": ({}, ADD, {"origin": "http://localhost:9000", **WRITE}, 403),
    "add from origin null": ({}, ADD, {"origin": "null", **WRITE}, 403),
    "add from another scheme's origin": ({}, ADD, {"origin": "ftp://127.0.0.1:8000", **WRITE},
                                         403),
    "cross-site add (Sec-Fetch-Site)": ({}, ADD, {"sec-fetch-site": "cross-site", **WRITE}, 403),
    "same-site add from another port": ({}, ADD, {"sec-fetch-site": "same-site", **WRITE}, 403),
    "add without the write header (a form post)": ({}, ADD, SAME, 403),
    "add through the allowed proxy's origin, no header": (
        {"allowed_host": ("search.example.org",)}, ADD,
        {"origin": "https://search.example.org", "sec-fetch-site": "same-origin"}, 403),
    "search through the allowed proxy's origin": (
        {"allowed_host": ("search.example.org",)}, SEARCH,
        {"origin": "https://search.example.org", "sec-fetch-site": "same-origin"}, 200),
    "add without the token": ({"token": TOKEN}, ADD, WRITE, 401),
    "add with a wrong token": ({"token": TOKEN}, ADD,
                               {"authorization": "Bearer " + TOKEN[:-1] + "x", **WRITE}, 401),
    "add with the token in a cookie": ({"token": TOKEN}, ADD,
                                       {"cookie": f"deephash_token={TOKEN}", **WRITE}, 401),
    "cross-origin add with the token": ({"token": TOKEN}, ADD, {
        "authorization": f"Bearer {TOKEN}", "origin": "http://127.0.0.1:9000"}, 403),
    "reads need no token by default": ({"token": TOKEN}, INFO, {}, 200),
    "token reads: info without it": ({"token": TOKEN, "token_reads": True}, INFO, {}, 401),
    "token reads: info with it": ({"token": TOKEN, "token_reads": True}, INFO,
                                  {"authorization": f"Bearer {TOKEN}"}, 200),
    "token reads: search without it": ({"token": TOKEN, "token_reads": True}, SEARCH,
                                       {"cookie": f"deephash_token={TOKEN}"}, 401),
    "token reads: search with it": ({"token": TOKEN, "token_reads": True}, SEARCH,
                                    {"authorization": f"bearer {TOKEN}"}, 200),
    "token reads: thumbnail with the cookie": (
        {"token": TOKEN, "token_reads": True}, ("get", "/items/3/thumbnail", {}),
        {"cookie": f"other=1; deephash_token={TOKEN}", "sec-fetch-site": "same-origin"}, 200),
    "token reads: the cookie from another site": (
        {"token": TOKEN, "token_reads": True}, ("get", "/items/3/thumbnail", {}),
        {"cookie": f"deephash_token={TOKEN}", "sec-fetch-site": "same-site"}, 401),
    "token reads: the page is open": ({"token": TOKEN, "token_reads": True},
                                      ("get", "/", {}), {}, 200),
    "token reads: its script is open": ({"token": TOKEN, "token_reads": True},
                                        ("get", "/static/app.js", {}), {}, 200),
    "token reads: health is open": ({"token": TOKEN, "token_reads": True},
                                    ("get", "/health", {}), {}, 200),
}


@pytest.mark.parametrize("case", list(ACCESS))
def test_who_may_read_and_write(searcher: Searcher, client: TestClient, case: str) -> None:
    fields, (method, url, arguments), headers, status = ACCESS[case]
    app = create_app(searcher, ServeConfig(**fields))
    response = getattr(local_client(app, headers={}), method)(url, headers=headers, **arguments)
    assert response.status_code == status, response.text
    if status >= 400:
        assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]
        assert ("www-authenticate" in response.headers) == (status == 401)
    assert searcher.state.size == 48  # nothing was added
    assert client.get("/health").status_code == 200


def test_a_write_with_the_header_or_the_token_adds(index: Path) -> None:
    copy = index.parent / "index-writes"
    shutil.copytree(index, copy)
    for fields, headers in (({}, WRITE), ({"token": TOKEN}, {"authorization": f"Bearer {TOKEN}"})):
        app = create_app(Searcher.open(copy), ServeConfig(**fields))
        before = len(list((copy / "added").glob("*"))) if (copy / "added").is_dir() else 0
        refused = local_client(app, headers={}).post("/items", files={"images": ("a.png", png())})
        assert refused.status_code in (401, 403)
        response = local_client(app, headers={}).post(
            "/items", headers={**headers, **SAME}, files={"images": ("a.png", png())})
        assert response.status_code == 200, response.text
        assert len(list((copy / "added").glob("*"))) == before + 1  # one, the refused none


@pytest.mark.parametrize(("fields", "problem"), [
    ({"token": "short"}, "must be 16 to 256 characters"),
    ({"token": "x" * 20 + " y"}, "must be 16 to 256 characters"),
    ({"token_reads": True}, "--token-reads needs a token"),
    ({"allowed_host": ("http://x.org/",)}, "is not a host name"),
    ({"max_pixels_in_flight": 10}, "--max-pixels-in-flight 10 is less than --max-pixels"),
    ({"max_request_pixels": 10}, "--max-request-pixels 10 is less than --max-pixels")])
def test_a_bad_access_or_limit_setting_is_refused(searcher: Searcher, fields: dict[str, Any],
                                                  problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        create_app(searcher, ServeConfig(**fields))


def test_a_token_from_the_environment_is_checked_in_one_line(
        index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DEEPHASH_TOKEN", "too-short")
    assert main(["serve", "--index", str(index)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DEEPHASH_TOKEN" in err[0] and "too-short" not in err[0]


def test_serve_on_an_address_it_cannot_bind_says_so_in_one_line(
        index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host in ("127.0.0.1", "192.0.2.1"):  # a taken port; an address not this machine's
            assert main(["serve", "--index", str(index), "--host", host,
                         "--port", str(port)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"cannot serve on --host {host} --port {port}" in err[0]


# --- memory: pixels per request and in flight, large images decoded small --------------

def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _large_png(side: int, colour: int) -> bytes:
    """A ``side x side`` PNG of one colour: about 50 KB at 4000."""
    image = Image.new("RGB", (side, side), (colour, 255 - colour, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
def test_a_batch_of_large_images_is_decoded_one_at_a_time_within_the_budget(
        searcher: Searcher) -> None:
    """Six 4000 x 4000 PNGs (16 M pixels, 64 MB decoded each): answered with at most one
    decoded at a time (the budget is one image), and the process does not keep their
    memory; eight of them are over the request's pixel limit: 413, before decoding."""
    side = 4000
    settings = ServeConfig(max_pixels=side * side, max_request_pixels=6 * side * side,
                           max_pixels_in_flight=side * side, max_batch=8)
    app = create_app(searcher, settings)
    client = local_client(app)
    files = [("images", (f"{n}.png", _large_png(side, 40 * n))) for n in range(8)]
    assert sum(len(data) for _, (_, data) in files) < settings.max_upload_bytes
    client.post("/search/batch?k=3", files=files[:1])  # first-call allocations
    before = _rss_bytes()
    response = client.post("/search/batch?k=3", files=files[:6])
    grown = _rss_bytes() - before
    assert response.status_code == 200 and len(response.json()["results"]) == 6
    assert app.state.pixel_budget.peak == side * side and app.state.pixel_budget.held == 0
    assert grown < 150_000_000, f"the server kept {grown:,} bytes after the request"
    refused = client.post("/search/batch?k=3", files=files)
    assert refused.status_code == 413 and "--max-request-pixels" in refused.json()["error"]
    assert "\n" not in refused.json()["error"]
    assert client.get("/health").json() == {"status": "ok"}


def test_the_pixel_budget_makes_decodes_wait_and_times_out() -> None:
    budget = PixelBudget(10, wait_s=10)
    events: list[tuple[str, int]] = []
    first = budget.hold(6)
    first.__enter__()

    def second() -> None:
        with budget.hold(6):
            events.append(("second holds", budget.held))

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.2)
    events.append(("first releases", budget.held))
    first.__exit__(None, None, None)
    thread.join(timeout=10)
    assert events == [("first releases", 6), ("second holds", 6)]
    assert budget.peak == 6 and budget.held == 0
    budget.wait_s = 0.1
    with budget.hold(6), pytest.raises(ApiError) as refused, budget.hold(6):
        pass
    assert refused.value.status == 503 and budget.held == 0  # the refused one took nothing


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1).astype(np.uint8)


def test_large_images_are_decoded_no_larger_than_the_model_needs() -> None:
    """Shorter side kept at least DETAIL x image_size: 8 x smaller at most; a JPEG in the
    decoder, a PNG right after; an image below twice that is decoded exactly."""
    size = 32  # the model's input side: reduce from 2 x 4 x 32 = 256 on the shorter side
    assert [reduction(w, h, size) for w, h in ((255, 4000), (256, 300), (1100, 600),
                                               (6000, 6000))] == [1, 2, 4, 8]
    small = _gradient(255, 300)
    for data in (png(small), _jpeg(small)):
        assert np.array_equal(np.array(decode_query(data, "q", size)),
                              np.array(decode_rgb(data, "q")))  # bit for bit
    large = _gradient(600, 1100)
    for data in (png(large), _jpeg(large)):
        reduced = decode_query(data, "q", size)
        assert reduced.size == (275, 150) and reduced.mode == "RGB"
        full = np.array(decode_rgb(data, "q").resize((275, 150), Image.Resampling.BOX),
                        dtype=float)
        assert np.abs(np.array(reduced, dtype=float) - full).mean() < 3
    assert decoded_pixels(1100, 600, "JPEG", size) == 275 * 150  # scaled in the decoder
    assert decoded_pixels(1100, 600, "PNG", size) == 1100 * 600  # decoded, then reduced


def test_a_large_query_gives_what_deephash_search_prints(
        client: TestClient, index: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The command decodes a query as the service does, large ones reduced alike."""
    for name, data in (("large.png", png(_gradient(700, 900))),
                       ("large.jpg", _jpeg(_gradient(700, 900)))):
        query = tmp_path / name
        query.write_bytes(data)
        hits = client.post("/search?k=7", files={"image": (name, data)}).json()["results"]
        root = (index.parent / "data").resolve()
        assert [(hit["distance"], str(root / hit["path"])) for hit in hits] == \
            cli_rows(index, query, 7, capsys)


# --- item paths confined to the data root; no server paths in answers ------------------

@pytest.mark.parametrize(("path", "local"), [
    ("../run/secret.png", False), ("{root}/secret.png", False),
    ("train/../../run/secret.png", False),
    ("added/../../run/secret.png", True), ("../run/secret.png", True), ("index.json", True)])
def test_an_altered_items_file_cannot_serve_another_file(index: Path, path: str,
                                                         local: bool) -> None:
    tree = index.parent
    secret = tree / "run" / "secret.png"
    secret.write_bytes(png())
    copy = tree / f"index-altered-{abs(hash((path, local)))}"
    shutil.copytree(index, copy, dirs_exist_ok=True)
    items_file = copy / read_info(copy)["items_file"] if "items_file" in read_info(copy) \
        else copy / "items.npz"
    items = Items.load(items_file)
    paths, flags = items.paths.astype(object), items.local.copy()
    paths[5], flags[5] = path.format(root=tree.resolve()), local
    Items(paths.astype(str), items.labels, items.classes, flags).save(items_file)
    reseal(copy)  # a tamperer who also rewrites index.json's checksums
    client = local_client(create_app(Searcher.open(copy), ServeConfig()))
    response = client.get("/items/5/thumbnail")
    assert response.status_code == 404, response.text
    message = response.json()["error"]
    assert "outside the index's data root" in message and str(tree) not in message
    assert client.get("/items/6/thumbnail").status_code == 200  # the others still serve


def test_a_missing_image_is_a_404_without_server_paths(index: Path) -> None:
    tree = index.parent
    copy = tree / "index-missing"
    shutil.copytree(index, copy, dirs_exist_ok=True)
    items_file = copy / "items.npz"
    items = Items.load(items_file)
    paths = items.paths.astype(object)
    paths[7] = "train/class0/gone.png"
    Items(paths.astype(str), items.labels, items.classes, items.local).save(items_file)
    reseal(copy)
    response = local_client(create_app(Searcher.open(copy), ServeConfig())).get(
        "/items/7/thumbnail")
    assert response.status_code == 404
    message = response.json()["error"]
    assert "not available on the server" in message
    assert str(tree) not in message and "gone.png" not in message


def test_the_bound_socket_answers_without_nagle_delays() -> None:
    """serve binds the socket itself (errors before loading) and hands it to uvicorn: it
    must say it is TCP, or asyncio leaves Nagle on and keep-alive answers wait 40 ms."""
    from deephash.service.serve import bind

    with bind("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
