"""Fake torch/torchvision wheels and PEP 503 indexes on localhost, for the install tests.

A wheel is a zip of the package, ``<dist>-<version>.dist-info/{METADATA,WHEEL,RECORD}``;
these hold a one-line ``__init__.py`` each (kilobytes, so pip runs in seconds and nothing
touches the network). tools/torch_wheels.py is loaded from its file: it is a script of
``./run``, not part of the package.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import re
import socket
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
TORCH_WHEELS_SCRIPT = ROOT / "tools" / "torch_wheels.py"


def load_torch_wheels() -> ModuleType:
    """tools/torch_wheels.py as a module."""
    spec = importlib.util.spec_from_file_location("torch_wheels", TORCH_WHEELS_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = (),
               extras: Sequence[str] = ()) -> Path:
    """``folder/<dist>-<version>-py3-none-any.whl``: package ``name`` saying its version."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{dist}-{version}.dist-info"
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                        *(f"Provides-Extra: {extra}\n" for extra in extras),
                        *(f"Requires-Dist: {requirement}\n" for requirement in requires)])
    files = {f"{dist}/__init__.py": f"__version__ = {version!r}\n",
             f"{info}/METADATA": metadata,
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: deephash-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [_record_line(path, text.encode()) for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def add_to_index(index: Path, name: str, version: str, requires: Sequence[str] = ()) -> None:
    """A fake wheel in the PEP 503 simple index at ``index`` (its page lists every wheel)."""
    project = index / re.sub(r"[-_.]+", "-", name).lower()
    make_wheel(project, name, version, requires)
    links = "".join(f'<a href="{quote(wheel.name)}">{wheel.name}</a>\n'
                    for wheel in sorted(project.glob("*.whl")))
    (project / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")


def torch_indexes(root: Path) -> tuple[Path, Path]:
    """(PyPI's stand-in, PyTorch's CPU index's stand-in) under ``root``, as pairs go.

    PyPI: torch 2.13.0 and 2.14.1 (the default builds, no local version) with torchvision
    0.28.0 and 0.29.1 each pinning its torch; the CPU index: the same as ``+cpu`` builds.
    """
    pypi, cpu = root / "pypi", root / "cpu"
    for index, local in ((pypi, ""), (cpu, "+cpu")):
        for torch, vision in (("2.13.0", "0.28.0"), ("2.14.1", "0.29.1")):
            add_to_index(index, "torch", torch + local)
            add_to_index(index, "torchvision", vision + local, [f"torch=={torch}"])
    return pypi, cpu


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT``, serving ``folder`` while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """A localhost URL nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/cpu"


def pip_env(index_url: str, **extra: str) -> dict[str, str]:
    """This process's environment with pip's settings replaced: ``index_url`` is PyPI, no
    configuration file, no cache (the machine's own pip.conf may add indexes and wheels)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PIP_", "DEEPHASH_TORCH"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=index_url, PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env
