"""``deephash serve``: load an index folder and its model once, then answer HTTP on uvicorn."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from pathlib import Path

from deephash.errors import ConfigError
from deephash.registries import parse_rerank
from deephash.service.config import ServeConfig, check_limits
from deephash.validation import validate

log = logging.getLogger(__name__)

INSTALL = "install the service's packages: pip install 'deephash[serve]'"


def _refused(host: str, port: int, reason: str) -> ConfigError:
    return ConfigError(f"cannot serve on --host {host} --port {port}: {reason}; give an "
                       "address of this machine (127.0.0.1, or 0.0.0.0 for every one) and a "
                       "free port")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_address(host: str, port: int) -> None:
    """Refuse a host that is no address or known name (``999.1.1.1``), without binding."""
    try:
        socket.getaddrinfo(host.strip("[]"), port, _family(host), socket.SOCK_STREAM,
                           flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise _refused(host, port, getattr(exc, "strerror", None) or str(exc)) from None


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), as uvicorn would bind it; a
    ``ConfigError`` for an address that is not this machine's or a port that is taken."""
    # IPPROTO_TCP named (not 0): asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP; without it Nagle's algorithm and delayed ACKs add 40 ms to a keep-alive answer
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host.strip("[]"), port))
    except (OSError, OverflowError, UnicodeError) as exc:
        sock.close()
        raise _refused(host, port, getattr(exc, "strerror", None) or str(exc)) from None
    sock.set_inheritable(True)
    return sock


def run_serve(config: ServeConfig) -> None:
    """Serve ``config.index`` on ``config.host:config.port`` until interrupted. The address,
    the folder and its checkpoint are checked before anything is served, so a bad one is a
    one-line error."""
    validate(config)
    config = dataclasses.replace(config, token=config.token or os.environ.get("DEEPHASH_TOKEN")
                                 or None)
    check_limits(config)
    check_address(config.host, config.port)
    try:
        import uvicorn

        from deephash.service.app import access_policy, create_app
    except ImportError as exc:
        raise ConfigError(f"deephash serve needs {exc.name or 'fastapi and uvicorn'}; "
                          f"{INSTALL}") from None
    access_policy(config)  # a bad token or allowed host: before the model is loaded
    import torch

    from deephash.service.folder import read_info
    from deephash.service.searcher import Searcher

    read_info(Path(config.index))  # not an index folder: say so before binding
    sock = bind(config.host, config.port)  # taken, or not this machine's: before loading
    try:
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count())
        slots = max(1, (cores or 1) // config.threads)
        searcher = Searcher.open(Path(config.index), config.checkpoint, forward_slots=slots,
                                 rerank=parse_rerank(config.rerank),
                                 compaction=(config.compact_items, config.compact_bytes),
                                 settings={"nprobe": config.nprobe,
                                           "efSearch": config.ef_search})
        app = create_app(searcher, config)
        state = searcher.state
        log.info("serving %s (%d items, %s) on http://%s:%d/", config.index, state.size,
                 state.info["index"], config.host, config.port)
        previous = torch.get_num_threads()
        torch.set_num_threads(config.threads)  # every thread's passes (torch's is global)
        try:
            server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port,
                                                   log_level="info",
                                                   timeout_graceful_shutdown=5))
            server.run(sockets=[sock])
        finally:
            torch.set_num_threads(previous)  # a caller's process as it was (tests, notebooks)
    finally:
        sock.close()
