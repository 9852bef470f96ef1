"""``deephash serve``: load an index folder and its model once, then answer HTTP on uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from deephash.errors import ConfigError
from deephash.registries import parse_rerank
from deephash.service.config import ServeConfig
from deephash.validation import validate

log = logging.getLogger(__name__)

INSTALL = "install the service's packages: pip install 'deephash[serve]'"


def run_serve(config: ServeConfig) -> None:
    """Serve ``config.index`` on ``config.host:config.port`` until interrupted. The folder
    and its checkpoint are read before the port is bound, so a bad one is a one-line error."""
    validate(config)
    try:
        import uvicorn

        from deephash.service.app import create_app
    except ImportError as exc:
        raise ConfigError(f"deephash serve needs {exc.name or 'fastapi and uvicorn'}; "
                          f"{INSTALL}") from None
    import torch

    from deephash.service.searcher import Searcher

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    slots = max(1, (cores or 1) // config.threads)
    searcher = Searcher.open(Path(config.index), config.checkpoint, forward_slots=slots,
                             rerank=parse_rerank(config.rerank))
    app = create_app(searcher, config)
    state = searcher.state
    log.info("serving %s (%d items, %s) on http://%s:%d/", config.index, state.size,
             state.info["index"], config.host, config.port)
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)  # every thread's passes (torch's setting is global)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="info",
                    timeout_graceful_shutdown=5)
    finally:
        torch.set_num_threads(previous)  # a caller's process as it was (tests, notebooks)
