"""``deephash serve``'s configuration (torch-free, like :mod:`deephash.studies.configs`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from deephash.errors import ConfigError
from deephash.registries import RERANK_HELP, parse_rerank


@dataclass
class ServeConfig:
    index: str = field(default="runs/index", metadata={
        "help": "index folder written by deephash index"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to bind; the default answers this machine only (put a reverse proxy "
                "with TLS and authentication in front for anything else, docs/service.md)"})
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
    max_request_pixels: int = field(default=200_000_000, metadata={
        "min": 1, "help": "most pixels (width x height, summed over its images) of one request "
                          "(413 above, before decoding)"})
    max_pixels_in_flight: int = field(default=80_000_000, metadata={
        "min": 1, "help": "most pixels decoded at once across concurrent requests (each "
                          "request decodes one image at a time; others wait); at least "
                          "--max-pixels"})
    allowed_host: tuple[str, ...] = field(default=(), metadata={
        "help": "more names this server is reached under (name or name:port, e.g. a reverse "
                "proxy's); localhost, loopback addresses and --host are always accepted, any "
                "other Host header is refused (DNS rebinding)"})
    token: str | None = field(default=None, metadata={
        "help": "require 'Authorization: Bearer TOKEN' for adding images (with --token-reads "
                "for everything but the page); better set DEEPHASH_TOKEN, a command line is "
                "visible to every user of the machine"})
    token_reads: bool = field(default=False, metadata={
        "help": "require the token for searches, items and /info too (the page: open "
                "/#token=TOKEN)"})
    threads: int = field(default=1, metadata={
        "min": 1, "help": "threads of one forward pass; concurrent requests run one pass per "
                          "group of this many cores (1: small queries, one core each, no "
                          "thread pool spinning against the others)"})
    checkpoint: str | None = field(default=None, metadata={
        "help": "the model that built the index, when it is no longer where index.json "
                "says (a moved or copied run's best.pt)"})
    rerank: str = field(default="ties", metadata={"parse": parse_rerank, "help": RERANK_HELP})
    compact_items: int = field(default=10_000, metadata={
        "min": 1, "help": "fold the append segments of POST /items into a new generation of "
                          "the index once they hold this many items and a tenth of the "
                          "index's items (docs/scale-appends.md)"})
    compact_bytes: int = field(default=256 * 2**20, metadata={
        "min": 1, "help": "... or once they take this many bytes on disk and a tenth of the "
                          "generation's base files"})
    nprobe: int | None = field(default=None, metadata={
        "min": 1, "help": "IVF indexes: lists scanned per query (default: as indexed)"})
    ef_search: int | None = field(default=None, metadata={
        "min": 1, "help": "HNSW indexes: candidates kept per query (default: as indexed)"})


def check_limits(config: ServeConfig) -> None:
    """Refuse pixel limits that would refuse every largest allowed image."""
    for option, value in (("--max-request-pixels", config.max_request_pixels),
                          ("--max-pixels-in-flight", config.max_pixels_in_flight)):
        if value < config.max_pixels:
            raise ConfigError(f"{option} {value:,} is less than --max-pixels "
                              f"{config.max_pixels:,}; raise it or lower --max-pixels")
