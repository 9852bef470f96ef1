"""``deephash serve``'s configuration (torch-free, like :mod:`deephash.studies.configs`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from deephash.registries import RERANK_HELP, parse_rerank


@dataclass
class ServeConfig:
    index: str = field(default="runs/index", metadata={
        "help": "index folder written by deephash index"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to bind; the default answers this machine only (put a reverse proxy "
                "with TLS and authentication in front for anything else, see README)"})
    port: int = field(default=8000, metadata={"min": 1, "max": 65535, "help": "TCP port"})
    max_upload_bytes: int = field(default=10_000_000, metadata={
        "min": 1, "help": "largest request body and uploaded image file, in bytes (413 above)"})
    max_pixels: int = field(default=40_000_000, metadata={
        "min": 1, "help": "largest uploaded image in pixels, width x height (413 above; "
                          "refuses decompression bombs before decoding)"})
    max_k: int = field(default=1000, metadata={
        "min": 1, "help": "most results one query may ask for (never more than the index "
                          "holds)"})
    max_batch: int = field(default=64, metadata={
        "min": 1, "help": "most images in one batch search or add request"})
    threads: int = field(default=1, metadata={
        "min": 1, "help": "threads of one forward pass; concurrent requests run one pass per "
                          "group of this many cores (1: small queries, one core each, no "
                          "thread pool spinning against the others)"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "the model that built the index, when it is no longer where index.json "
                "says (a moved or copied run's best.pt)"})
    rerank: str = field(default="ties", metadata={"parse": parse_rerank, "help": RERANK_HELP})
