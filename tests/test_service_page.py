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
from tests.conftest import make_image_folder, tiny_run_args
from tests.test_report import ARTEFACTS, chromium

pytestmark = pytest.mark.skipif(chromium() is None,
                                reason="no Chromium (.ci/run installs Debian's)")

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


@pytest.fixture(scope="module")
def server(index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``deephash serve --index INDEX`` on a free localhost port; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "deephash.cli", "serve", "--index",
                                    str(index), "--port", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT)
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
