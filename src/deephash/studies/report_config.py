"""``deephash report``'s options (torch-free, like every command's configuration)."""

from __future__ import annotations

from dataclasses import dataclass, field

from deephash.pipeline.config import MAX_SEED


@dataclass
class ReportConfig:
    runs: tuple[str, ...] = field(default=(), metadata={
        "positional": True, "help": "run folders (baseline, train, hash, studies); every "
                                    "finished run at or under them is reported"})
    out: str = field(default="runs/report", metadata={
        "help": "folder to write report.html and report.md into"})
    title: str = field(default="deephash report", metadata={"help": "the report's title"})
    queries: int = field(default=6, metadata={
        "min": 0, "help": "test queries in the retrieval gallery (the same for every run)"})
    k: int = field(default=10, metadata={"flag": "-k", "min": 1,
                                         "help": "results per query in the gallery"})
    seed: int = field(default=0, metadata={"min": 0, "max": MAX_SEED,
                                           "help": "seed of the gallery's queries"})
