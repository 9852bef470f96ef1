"""The search page of ``deephash serve`` in a real browser: headless Chromium against the
real server (a subprocess on a free localhost port, a tiny 12-bit index), every request
that is not to that server refused."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deephash.cli import main
from tests.conftest import NO_CHROMIUM, make_image_folder, tiny_run_args
from tests.test_report import ARTEFACTS, chromium

pytestmark = pytest.mark.skipif(chromium() is None, reason=NO_CHROMIUM)

K = 20  # more than a class holds (16): some results are of another class
#: decoded, visible (not lazy) images: every <img> of the page has loaded and has pixels
ALL_IMAGES_DECODED = ("Array.from(document.images).filter(i => i.getAttribute('src'))"
                      ".every(i => i.complete && i.naturalWidth > 0)")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-bit hashing model's index of 3 classes x 16 images (the tree of tests/test_search)."""
    tree = tmp_path_factory.mktemp("service-page")
    data = make_image_folder(tree / "data", n_classes=3, n_train=12, n_test=4)
    assert main(["hash", "--out", str(tree / "run"), "--bits", "12",
                 *tiny_run_args(data, tree / "c", epochs=1)]) == 0
    assert main(["index", "--checkpoint", str(tree / "run" / "bits-12" / "best.pt"),
                 "--data-dir", str(data), "--out", str(tree / "index"),
                 "--cache-dir", str(tree / "c")]) == 0
    return tree / "index"


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def serving(index: Path, log: Path, env: dict[str, str] | None = None,
            options: list[str] | None = None) -> Iterator[str]:
    """``deephash serve --index INDEX`` (with ``options``, in ``env``) on a free localhost
    port (its output in ``log``); its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "deephash.cli", "serve", "--index",
                                    str(index), "--port", str(port), *(options or [])],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, body = _get(port, "/health")
                if status == 200 and json.loads(body) == {"status": "ok"}:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"deephash serve did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def server(index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``deephash serve --index INDEX`` on a free localhost port; its base URL."""
    with serving(index, tmp_path_factory.mktemp("server") / "serve.log") as base:
        yield base


class Browser:
    """A headless Chromium page that records console errors and refuses every request
    that is not to the server (``blob:`` and ``data:`` URLs are the page's own)."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.errors, self.refused = page, list[str](), list[str]()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.route("**/*", self._route)
        self.base = base

    def _route(self, route: Any) -> None:
        if route.request.url.startswith((self.base, "blob:", "data:")):
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    def grid(self) -> list[dict[str, Any]]:
        """The result cells: item id, alt text, caption, marked wrong or not."""
        return self.page.evaluate("""Array.from(document.querySelectorAll('#results li'))
            .map(li => ({id: Number(li.dataset.id), alt: li.querySelector('img').alt,
                         text: li.innerText, wrong: li.classList.contains('wrong')}))""")

    def wait_for_grid(self, query: str) -> None:
        """Until the grid shows K results for ``query`` (an item id, or "" for an upload)
        and every image of the page has decoded."""
        self.page.wait_for_function(
            f"document.querySelectorAll('#results li').length === {K} && "
            f"document.getElementById('query').dataset.id === {json.dumps(query)} && "
            f"!document.body.hasAttribute('aria-busy')")
        self.page.wait_for_function(ALL_IMAGES_DECODED)


@pytest.fixture
def browser(server: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = chrome.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(30_000)
            yield Browser(page, server)
        finally:
            chrome.close()


def _port(server: str) -> int:
    return int(server.rstrip("/").rsplit(":", 1)[1])


def _api(server: str, path: str) -> Any:
    status, body = _get(_port(server), path)
    assert status == 200, body
    return json.loads(body)


def _upload(server: str, name: str, data: bytes) -> tuple[int, Any]:
    """``POST /search?k=K`` of one file, as the page sends it: the status and the JSON."""
    boundary = "deephash-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", _port(server), timeout=30)
    try:
        connection.request("POST", f"/search?k={K}", body=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_upload_then_click_a_result_searches_from_it(server: str, browser: Browser,
                                                     index: Path) -> None:
    page = browser.page
    page.goto(server)
    page.wait_for_function("document.getElementById('info').dataset.kind === 'codes'")
    info = page.inner_text("#info")
    assert "48 items" in info and "12-bit codes" in info and "BFlat" in info
    assert page.get_attribute("#file", "type") == "file"
    assert page.eval_on_selector("#file", "e => e.labels.length") == 1  # labelled control
    page.fill("#k", str(K))
    query = index.parent / "data" / "test" / "class1" / "02.png"
    page.set_input_files("#file", str(query))
    browser.wait_for_grid("")
    shown = browser.grid()
    status, answer = _upload(server, query.name, query.read_bytes())
    assert status == 200
    assert [cell["id"] for cell in shown] == [hit["id"] for hit in answer["results"]]
    assert all(cell["alt"] for cell in shown)
    assert not any(cell["wrong"] for cell in shown)  # an upload's class is unknown
    assert page.get_attribute("#query-image", "src").startswith("blob:")
    assert "02.png" in page.inner_text("#query-caption")
    first = shown[0]["id"]
    page.click(f"#results li[data-id='{first}'] button")
    browser.wait_for_grid(str(first))
    expected = _api(server, f"/items/{first}/search?k={K}")
    shown = browser.grid()
    assert [cell["id"] for cell in shown] == [hit["id"] for hit in expected["results"]]
    assert first in [cell["id"] for cell in shown]  # the item is among its own hits
    for cell, hit in zip(shown, expected["results"], strict=True):
        assert f"distance {round(hit['distance'])}" in cell["text"]
        assert hit["class"] in cell["text"] and hit["class"] in cell["alt"]
        assert cell["wrong"] == (hit["label"] != expected["query"]["label"])
        assert ("wrong class" in cell["text"]) == cell["wrong"]
    assert any(cell["wrong"] for cell in shown) and not all(cell["wrong"] for cell in shown)
    ties = expected["ties"]  # the line under the results: items tied with the last hit
    assert ties["count"] > ties["shown"]  # this query's k-th distance is a cut tie
    assert not page.evaluate("document.getElementById('ties').hidden")
    assert page.inner_text("#ties") == (
        f"{ties['count']} items share Hamming distance {ties['distance']} with the last "
        f"result; {ties['shown']} of them are shown, chosen by the model's continuous outputs.")
    assert page.get_attribute("#query-image", "src") == f"items/{first}/thumbnail"
    assert expected["query"]["class"] in page.inner_text("#query-caption")
    # a Hamming radius of 0 re-runs the query: only the hits at distance 0 stay
    within = _api(server, f"/items/{first}/search?k={K}&radius=0")["results"]
    assert 1 <= len(within) < K
    page.fill("#radius", "0")
    page.dispatch_event("#radius", "change")
    page.wait_for_function(f"document.querySelectorAll('#results li').length === {len(within)}"
                           " && !document.body.hasAttribute('aria-busy')")
    assert [cell["id"] for cell in browser.grid()] == [hit["id"] for hit in within]
    page.fill("#radius", "")
    page.dispatch_event("#radius", "change")
    browser.wait_for_grid(str(first))
    ARTEFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / "service-page.png"), full_page=True)
    assert browser.errors == [] and browser.refused == []
    assert page.evaluate("document.getElementById('error').hidden")
    assert (ARTEFACTS / "service-page.png").stat().st_size > 10_000


def test_a_dropped_image_searches_and_api_errors_show_as_text(
        server: str, browser: Browser, index: Path, tmp_path: Path) -> None:
    page = browser.page
    page.goto(server)
    page.wait_for_function("document.getElementById('info').dataset.kind === 'codes'")
    page.fill("#k", str(K))
    # a file that is not an image: the API refuses it, the page shows its one line
    (tmp_path / "notes.png").write_text("not an image at all")
    page.set_input_files("#file", str(tmp_path / "notes.png"))
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    status, refused = _upload(server, "notes.png", b"not an image at all")
    assert 400 <= status < 500 and message == refused["error"]
    assert "\n" not in message and len(message) > 10
    assert page.evaluate("document.getElementById('results-section').hidden")
    # the browser logs the refused request; nothing else went wrong
    assert all("status of 4" in error for error in browser.errors), browser.errors
    # k over the service's limit is refused on the page, naming the limit
    max_k = _api(server, "/info")["max_k"]
    assert page.get_attribute("#k", "max") == str(max_k)
    page.fill("#k", str(max_k + 1))
    page.dispatch_event("#k", "change")
    assert f"from 1 to {max_k}" in page.inner_text("#error")
    page.fill("#k", str(K))
    # then a real image, dropped on the drop zone: the error goes, the grid comes
    data = base64.b64encode((index.parent / "data" / "train" / "class2" / "03.png")
                            .read_bytes()).decode()
    transfer = page.evaluate_handle("""data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
        return transfer; }""", data)
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    browser.wait_for_grid("")
    assert page.evaluate("document.getElementById('error').hidden")
    assert "dropped.png" in page.inner_text("#query-caption")
    assert browser.refused == []


#: a page of another origin that tries to add an image to ``TARGET`` three ways: a no-cors
#: fetch (sent without a preflight; its answer unreadable, but an add would be done), a
#: fetch with the write header (needs a preflight, which the server never grants) and a
#: form post into an iframe
ELSEWHERE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>elsewhere</title>
<iframe name="sink" title="sink"></iframe>
<form id="form" method="post" enctype="multipart/form-data" action="TARGETitems" target="sink">
<input type="file" name="images" id="file"><input name="label" value="class0"></form>
<script>
const bytes = Uint8Array.from(atob("DATA"), c => c.charCodeAt(0));
function form() {
  const body = new FormData();
  body.append("images", new Blob([bytes], {type: "image/png"}), "planted.png");
  return body;
}
async function attack() {
  const outcomes = {};
  try {
    const r = await fetch("TARGETitems", {method: "POST", mode: "no-cors", body: form()});
    outcomes.noCors = r.type;
  } catch (e) { outcomes.noCors = "failed"; }
  try {
    await fetch("TARGETitems", {method: "POST", body: form(),
                                headers: {"X-Requested-With": "x"}});
    outcomes.cors = "answered";
  } catch (e) { outcomes.cors = "failed"; }
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], "planted.png", {type: "image/png"}));
  document.getElementById("file").files = transfer.files;
  document.getElementById("form").submit();
  return outcomes;
}
</script></html>"""


@contextlib.contextmanager
def elsewhere(html: str) -> Iterator[str]:
    """A page of another origin (another localhost port); its URL."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page) as site:
        thread = threading.Thread(target=site.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{site.server_address[1]}/"
        finally:
            site.shutdown()


def test_a_page_of_another_origin_cannot_add_and_the_own_page_can(
        index: Path, tmp_path: Path) -> None:
    import shutil

    from playwright.sync_api import sync_playwright

    copy = index.parent / "index-cross-origin"
    shutil.copytree(index, copy, dirs_exist_ok=True)
    image = (index.parent / "data" / "test" / "class0" / "00.png").read_bytes()
    data = base64.b64encode(image).decode()
    with serving(copy, tmp_path / "serve.log") as base, \
            elsewhere(ELSEWHERE.replace("TARGET", base).replace("DATA", data)) as attacker, \
            sync_playwright() as playwright:
        assert _port(attacker) != _port(base)
        size = _api(base, "/info")["size"]
        chrome = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = chrome.new_page()
            page.set_default_timeout(30_000)
            posts: list[tuple[str, int]] = []
            page.on("response", lambda r: posts.append((r.request.resource_type, r.status))
                    if r.request.method == "POST" else None)
            page.goto(attacker)
            with page.expect_response(lambda r: r.request.resource_type == "document"
                                      and r.request.method == "POST"):
                outcomes = page.evaluate("attack()")
            assert outcomes == {"noCors": "opaque", "cors": "failed"}
            # the no-cors fetch and the form post reached the server and were refused; the
            # fetch with the header never left the browser (its preflight was not granted)
            assert sorted(posts) == [("document", 403), ("fetch", 403)], posts
            sink = page.frame(name="sink")
            assert sink is not None and "cross-origin" in sink.inner_text("body")
            assert _api(base, "/info")["size"] == size  # nothing was added
            # the service's own page adds through its api(): same origin, with the header
            page.goto(base)
            page.wait_for_function("document.getElementById('info').dataset.kind")
            answer = page.evaluate("""async data => {
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                const body = new FormData();
                body.append("images", new Blob([bytes], {type: "image/png"}), "own.png");
                return api("items", {method: "POST", body});
            }""", data)
            assert answer["size"] == size + 1 and len(answer["added"]) == 1
            assert _api(base, "/info")["size"] == size + 1
        finally:
            chrome.close()
    log = (tmp_path / "serve.log").read_text()
    assert log.count('"POST /items HTTP/1.1" 403') == 2 and "OPTIONS /items" in log


def test_the_page_works_with_a_token_for_reads(index: Path, tmp_path: Path) -> None:
    """``serve --token-reads`` with ``DEEPHASH_TOKEN``: the page opened as ``/#token=``
    drops the fragment from its address, searches and shows every thumbnail."""
    import os

    token = "page-test-token-0123456789"
    with serving(index, tmp_path / "serve.log", {**os.environ, "DEEPHASH_TOKEN": token},
                 ["--token-reads"]) as base:
        status, body = _get(_port(base), "/info")
        assert status == 401 and "token" in json.loads(body)["error"]
        assert "--token-reads" in str(_ps_arguments(base)) and token not in _ps_arguments(base)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            chrome = playwright.chromium.launch(executable_path=chromium(),
                                                args=["--no-sandbox"])
            try:
                page = chrome.new_page(viewport={"width": 1100, "height": 900})
                page.set_default_timeout(30_000)
                browser = Browser(page, base)
                page.goto(f"{base}#token={token}")
                page.wait_for_function("document.getElementById('info').dataset.kind")
                assert token not in page.url
                page.fill("#k", str(K))
                page.set_input_files("#file", str(index.parent / "data/test/class1/02.png"))
                browser.wait_for_grid("")
                assert len(browser.grid()) == K and browser.errors == []
            finally:
                chrome.close()


def _ps_arguments(base: str) -> str:
    """The command line of the process listening on ``base``'s port (as ``ps`` shows it)."""
    port = str(_port(base))
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "deephash.cli serve" in line and port in line:
                return line
    raise AssertionError(f"no server on port {port}")


@pytest.mark.parametrize("labels", ["multi-label", "unlabelled"])
def test_the_page_frames_relevance_as_a_shared_label_or_not_at_all(
        index: Path, tmp_path: Path, labels: str) -> None:
    """Multi-label items: captions list every label, a hit that shares no label with the
    query item is marked so (the server's ``shares_label``); an index without labels names
    none and marks nothing."""
    import shutil

    from playwright.sync_api import sync_playwright

    from tests.test_service_store import multi_label_copy

    copy = Path(shutil.copytree(index, tmp_path / "index"))
    if labels == "multi-label":
        multi_label_copy(copy, [[i % 3, 3] if i % 5 == 0 else [i % 3] for i in range(48)],
                         ("sky", "tree", "water", "car"))
    else:
        multi_label_copy(copy, [[] for _ in range(48)], ())
    with serving(copy, tmp_path / "serve.log") as base, sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = chrome.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(30_000)
            browser = Browser(page, base)
            page.goto(base)
            page.wait_for_function("document.getElementById('info').dataset.kind === 'codes'")
            page.fill("#k", str(K))
            page.evaluate("searchItem(5)")
            browser.wait_for_grid("5")
            expected = _api(base, f"/items/5/search?k={K}")
            shown = browser.grid()
            hint = page.inner_text("#results-section .hint")
            caption = page.inner_text("#query-caption")
            assert browser.errors == [] and browser.refused == []
        finally:
            chrome.close()
    assert [cell["id"] for cell in shown] == [hit["id"] for hit in expected["results"]]
    if labels == "multi-label":
        assert expected["query"]["labels"] == ["water", "car"]  # item 5: class 2 and car
        assert "Results that share no label with the query are marked shares no label." in hint
        assert "water, car" in caption
        for cell, hit in zip(shown, expected["results"], strict=True):
            assert ", ".join(hit["labels"]) in cell["text"]
            assert cell["wrong"] == (hit["shares_label"] is False)
            assert ("shares no label" in cell["text"]) == cell["wrong"]
            assert "wrong class" not in cell["text"]
        assert any(cell["wrong"] for cell in shown) and not all(cell["wrong"] for cell in shown)
    else:
        assert hint == "Click a result to search from it."
        assert caption == f"item 5 · {expected['query']['path']}"
        assert not any(cell["wrong"] for cell in shown)
        assert all("unlabelled" not in cell["text"] for cell in shown)
