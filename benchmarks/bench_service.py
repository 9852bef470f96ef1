"""The search service under load: ``deephash serve`` on localhost, timed from outside.

Starts ``deephash serve --index DIR`` as a subprocess on a free localhost port, waits for
``/health``, then for each kind of request — search by item id (``GET
/items/{id}/search``, random ids, seeded) and search by an uploaded image (``POST
/search``, the bytes of the index's own images: CIFAR-size files on CIFAR-10) — measures

1. one client, sequential (``--sequential`` requests): p50, the issue's targets (by id
   < 20 ms p50 on a 50,000-item code index; an upload < 100 ms p50);
2. ``--clients`` concurrent clients (threads, one keep-alive connection each) sharing
   ``--requests`` requests: p50 / p99 / mean latency, throughput and errors.

With ``--check`` a few uploaded queries are also searched with ``deephash search``'s
library function, which must give the same items and distances, and a few items must be
among their own hits at distance 0 (or, for codes, behind k items tied with them at 0).

Code indexes are searched as served: Hamming ties ordered by the continuous outputs
(``deephash serve``'s default ``--rerank ties``).

With ``--memory`` the server's resident memory (``/proc/PID/status``: the peak ``VmHWM``,
reset before each part through ``clear_refs``, and ``VmRSS`` after) is measured under the
worst request its limits allow — as many single-colour PNGs of ``--max-pixels`` as
``--max-batch``, ``--max-request-pixels`` and ``--max-upload-bytes`` let into one
``POST /search/batch`` (a 6000 x 6000 PNG is about 100 KB) — sent once, then by 8 clients
at once. ``--serve-args`` passes options to ``deephash serve`` (other limits). Results go
to ``benchmarks/results/service.json``.

    ./run python benchmarks/bench_service.py --index runs/index [--clients 8]
          [--requests 400] [--check] [--memory [--only-memory]] [--serve-args "..."]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

HOST = "127.0.0.1"
TARGETS_MS = {"by_id": 20.0, "upload": 100.0}  # sequential p50, on a 50,000-item code index


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects once after a dropped connection."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port, self.timeout = port, timeout
        self.connection = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                self.connection = http.client.HTTPConnection(HOST, self.port,
                                                             timeout=self.timeout)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> Any:
        status, data = self.request(method, path, body, headers)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data)


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A ``multipart/form-data`` body holding one file, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    kind = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: {kind}\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Served(NamedTuple):
    port: int
    pid: int


@contextlib.contextmanager
def server(index: Path, startup_s: float, options: list[str] | None = None) -> Iterator[Served]:
    """``deephash serve`` (with ``options``) in a subprocess on a free port, up
    (``/health``) until the end."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen([sys.executable, "-m", "deephash.cli", "serve", "--index",
                                    str(index), "--host", HOST, "--port", str(port),
                                    *(options or [])],
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_s
            while True:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if Client(port, timeout=5).request("GET", "/health")[0] == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"deephash serve did not come up on port {port}:\n"
                                     f"{log.read()[-3000:]}")
                time.sleep(0.2)
            yield Served(port, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def item_files(index: Path) -> list[Path | None]:
    """Per indexed item, its image file (``None`` where the item is not a file: a CIFAR-10
    or MNIST row, or a folder that moved away), read as the service reads the folder."""
    from deephash.service.folder import data_files, item_root, read_info
    from deephash.service.items import Items

    info = read_info(index)
    items = Items.load(index / data_files(info)[1])
    root = item_root(index, info)
    files = [index / path if local else root / path if root else Path(path)
             for path, local in zip(items.paths.astype(str), items.local, strict=True)]
    return [file if file.is_file() else None for file in files]


def upload_images(port: int, files: list[Path | None], ids: np.ndarray) -> list[bytes]:
    """The bytes of the items ``ids``: their own files, or the service's thumbnail."""
    client = Client(port)
    images = []
    for i in ids:
        file = files[int(i)]
        if file is not None:
            images.append(file.read_bytes())
            continue
        status, data = client.request("GET", f"/items/{int(i)}/thumbnail")
        if status != 200:
            raise SystemExit(f"no file and no thumbnail for item {int(i)} ({status})")
        images.append(data)
    return images


class Request(NamedTuple):
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] | None = None

    def send(self, client: Client) -> int:
        return client.request(self.method, self.path, self.body, self.headers)[0]


def requests_of(kind: str, count: int, n_items: int, images: list[bytes], k: int,
                seed: int) -> list[Request]:
    """``count`` requests of one kind, the ids (or images) drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    if kind == "by_id":
        ids = rng.integers(0, n_items, count)
        return [Request("GET", f"/items/{i}/search?k={k}") for i in ids]
    bodies = [multipart("image", f"q{j}.img", data) for j, data in enumerate(images)]
    return [Request("POST", f"/search?k={k}", *bodies[j])
            for j in rng.integers(0, len(bodies), count)]


def run_clients(port: int, requests: list[Request], clients: int) -> dict[str, Any]:
    """The requests shared by ``clients`` threads, each taking the next one free."""
    latencies: list[float] = []
    errors: list[str] = []
    queue = iter(requests)
    lock = threading.Lock()

    def work() -> None:
        client = Client(port)
        while True:
            with lock:
                request = next(queue, None)
            if request is None:
                return
            start = time.perf_counter()
            try:
                status = request.send(client)
                failure = None if status == 200 else f"HTTP {status}"
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if failure:
                    errors.append(failure)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(requests), "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2),
            "throughput_per_s": round(len(requests) / wall, 1)}


def check(port: int, index: Path, images: list[bytes], ids: np.ndarray,
          k: int) -> dict[str, Any]:
    """Uploads of ``images`` against ``deephash search`` of the same bytes (same items,
    classes and distances, in the same order), and the items ``ids`` among their own hits
    at distance 0."""
    from deephash.studies.search import SearchConfig, search_image

    client, mismatches = Client(port), []
    with tempfile.TemporaryDirectory() as folder:
        for j, data in enumerate(images):
            file = Path(folder) / f"query-{j}.img"
            file.write_bytes(data)
            hits = client.json("POST", f"/search?k={k}",
                               *multipart("image", file.name, data))["results"]
            with contextlib.redirect_stdout(io.StringIO()):
                rows = search_image(SearchConfig(image=str(file), index=str(index), k=k))
            same = len(hits) == len(rows) and all(
                row["path"].endswith(hit["path"]) and row["label"] == hit["class"]
                and np.isclose(row["distance"], hit["distance"], rtol=1e-5, atol=1e-6)
                for hit, row in zip(hits, rows, strict=False))
            if not same:
                mismatches.append({"query": j, "service": hits, "deephash_search": rows})
    self_missing = []
    for i in ids:
        hits = client.json("GET", f"/items/{int(i)}/search?k={k}")["results"]
        # the item is at distance 0 from itself: among its hits, or (Hamming ties ordered by
        # the continuous outputs, then at random) behind k items tied with it at distance 0
        # whose outputs are as near (duplicates)
        at_zero = [hit for hit in hits if abs(hit["distance"]) < 1e-5]
        if not any(hit["id"] == int(i) for hit in at_zero) and len(at_zero) < k:
            self_missing.append(int(i))
    return {"uploads_compared": len(images), "upload_mismatches": mismatches,
            "items_checked": len(ids), "items_not_among_own_hits": self_missing,
            "passed": not mismatches and not self_missing}


def single_colour_png(side: int, colour: int) -> bytes:
    """A ``side x side`` PNG of one colour (about 100 KB at 6000: a small upload that
    decodes to ``3 * side**2`` bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (colour % 256, 255 - colour % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def worst_request(info: dict[str, Any]) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    """The ``POST /search/batch`` body that decodes the most pixels the server's limits
    allow (``/info``), its headers, and what it holds."""
    side = math.isqrt(info["max_pixels"])
    count = min(info["max_batch"], info["max_request_pixels"] // (side * side))
    images = [single_colour_png(side, 37 * n) for n in range(count)]
    while count > 1 and sum(map(len, images)) + 400 * count > info["max_upload_bytes"]:
        count -= 1
        images.pop()
    boundary = uuid.uuid4().hex
    body = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"w{n}.png\""
        f"\r\nContent-Type: image/png\r\n\r\n".encode() + data + b"\r\n"
        for n, data in enumerate(images)) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, {
        "images": count, "side": side, "pixels": count * side * side, "body_bytes": len(body),
        "decoded_rgb_mb": round(3 * count * side * side / 2**20, 1)}


def memory(served: Served, info: dict[str, Any], clients: int = 8) -> dict[str, Any]:
    """The server's peak and remaining resident memory under the worst allowed request,
    sent once and by ``clients`` clients at once (see the module docstring)."""
    from common import reset_peak_rss, rss_mb

    body, headers, request = worst_request(info)
    search = Request("POST", "/search/batch?k=10", body, headers)
    Client(served.port).request("GET", "/health")
    parts: dict[str, Any] = {"idle_rss_mb": round(rss_mb("VmRSS", served.pid), 1)}
    for name, count in (("one_request", 1), (f"{clients}_concurrent", clients)):
        reset_peak_rss(served.pid)
        before = rss_mb("VmRSS", served.pid)
        result = run_clients(served.port, [search] * count, count)
        time.sleep(1.0)  # answers sent; memory handed back
        parts[name] = {"requests": count, "errors": result["errors"],
                       "first_error": result["first_error"], "p50_s": round(
                           result["p50_ms"] / 1000, 2),
                       "rss_before_mb": round(before, 1),
                       "peak_rss_mb": round(rss_mb("VmHWM", served.pid), 1),
                       "rss_after_mb": round(rss_mb("VmRSS", served.pid), 1)}
        print("memory", name, json.dumps(parts[name]), flush=True)
    limits = {key: info[key] for key in ("max_pixels", "max_request_pixels", "max_batch",
                                         "max_upload_bytes")}
    return {"worst_request": request, "limits": limits, **parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True, type=Path, help="a deephash index folder")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=400,
                        help="requests of each kind shared by the concurrent clients")
    parser.add_argument("--sequential", type=int, default=100,
                        help="requests of each kind from a single client")
    parser.add_argument("-k", type=int, default=10, help="results per query")
    parser.add_argument("--seed", type=int, default=0, help="draws the ids and images")
    parser.add_argument("--check", action="store_true",
                        help="also compare some results with deephash search's")
    parser.add_argument("--startup-s", type=float, default=600,
                        help="how long the server may take to come up")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the server's memory under the worst allowed request, "
                             "once and from 8 clients at once")
    parser.add_argument("--only-memory", action="store_true",
                        help="measure only the memory (implies --memory; written to "
                             "results/service_memory.json)")
    parser.add_argument("--serve-args", default="",
                        help="options for deephash serve, e.g. \"--max-pixels 16000000\"")
    args = parser.parse_args()
    from common import write_result

    from deephash.errors import DeephashError

    try:
        files = item_files(args.index)
    except DeephashError as exc:
        parser.error(str(exc))
    n_items = len(files)
    rng = np.random.default_rng(args.seed)
    rows: dict[str, Any] = {}
    checked = used = None
    with server(args.index, args.startup_s, shlex.split(args.serve_args)) as served:
        port = served.port
        info = Client(port).json("GET", "/info")
        images = upload_images(port, files, rng.integers(0, n_items, 64))
        warm = Client(port)
        for offset, kind in enumerate(() if args.only_memory else ("by_id", "upload")):
            for request in requests_of(kind, 10, n_items, images, args.k, args.seed + 99):
                request.send(warm)  # warm-up: first-call allocations, thread pools
            sequential = run_clients(port, requests_of(kind, args.sequential, n_items, images,
                                                       args.k, args.seed + offset), 1)
            loaded = run_clients(port, requests_of(kind, args.requests, n_items, images,
                                                   args.k, args.seed + 10 + offset),
                                 args.clients)
            rows[kind] = {"sequential": sequential, "concurrent": loaded,
                          "target_p50_ms": TARGETS_MS[kind],
                          "target_met": sequential["p50_ms"] < TARGETS_MS[kind]}
            print(kind, json.dumps(rows[kind]), flush=True)
        checked = (check(port, args.index, images[:3], rng.integers(0, n_items, 3), args.k)
                   if args.check else None)
        used = memory(served, info) if args.memory or args.only_memory else None
    write_result("service_memory" if args.only_memory else "service", {
        "what": f"deephash serve on localhost: search by item id (GET /items/ID/search) and "
                f"by an uploaded image of the index (POST /search), k={args.k}; a single "
                f"client, then {args.clients} concurrent clients",
        "goal": "sequential p50: by id < 20 ms on a 50,000-item code index, upload < 100 ms",
        "index": {key: info.get(key) for key in ("kind", "bits", "dim", "size", "index",
                                                 "backbone")},
        "serve_args": args.serve_args or None, "kinds": rows, "check": checked,
        "memory": used})
    if checked is not None and not checked["passed"]:
        raise SystemExit("check failed: the service's results differ from deephash search's")


if __name__ == "__main__":
    main()
