"""``deephash study``'s options (torch-free). The study itself -- its stages and their
settings -- is a YAML file: a shipped preset (``--preset quick``, ``full``; in
``deephash/studies/presets/``) or the user's own (``--file``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PRESETS_DIR = Path(__file__).parent / "presets"
PRESETS = tuple(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))


@dataclass
class StudyConfig:
    preset: str = field(default="quick", metadata={
        "choices": PRESETS, "help": "the shipped study to run (quick: a first look in "
                                    "minutes; full: the study of docs/study.md; methods: "
                                    "the hashing methods side by side, methods-quick its "
                                    "first look)"})
    file: str | None = field(default=None, metadata={
        "help": "a study YAML of your own instead of a preset (see the presets: title, base "
                "settings for every stage, stages with name, command, options)"})
    out: str = field(default="runs/study", metadata={
        "help": "study folder: one run folder per stage, report.html and report.md"})
    data_dir: str | None = field(default=None, metadata={
        "help": "data set for every stage (default: the study's, else $DEEPHASH_DATA)"})
    cache_dir: str | None = field(default=None, metadata={
        "help": "feature cache shared by every stage (default $DEEPHASH_CACHE or "
                "~/.cache/deephash)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:N]"})
    report: bool = field(default=True, metadata={
        "help": "write report.html and report.md when the stages are done"})
