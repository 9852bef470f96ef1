"""Exported backbones, cached once per (backbone, weights, input size, runtime).

An export is a folder ``<cache>/runtimes/<digest>/`` holding the runtime's model files and,
written last, ``manifest.json``: the full :class:`ExportKey` and each file's size and
SHA-256. The folder is written under a temporary name and renamed into place, so a reader
sees a complete export or none; one whose manifest is missing, does not match its key or
its files (a truncated or edited file) is deleted and exported again, never used. Two
processes exporting at once both succeed: the first rename wins, the other uses it.

Random-weight backbones (no ``weights_id``) and ``--no-cache`` export into a temporary
folder that is gone once the model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from deephash.fileio import file_sha256, save_json

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Bump when a code change alters what an export holds, so old exports stop matching.
EXPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExportKey:
    """What determines an exported model: the backbone and its weights, the static input
    side, the runtime and both ends' versions (exporter and runtime)."""

    backbone: str
    weights: str
    image_size: int
    runtime: str
    versions: str
    version: int = EXPORT_FORMAT_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:32]


def _manifest(folder: Path, key: ExportKey) -> dict[str, Any]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "manifest.json")
    return {"key": key.as_dict(),
            "files": {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files}}


class ExportStore:
    """Get-or-export runtime models under ``<root>/runtimes``; ``root=None`` keeps nothing."""

    def __init__(self, root: Path | None) -> None:
        self.root = None if root is None else Path(root)

    def folder(self, key: ExportKey) -> Path:
        if self.root is None:
            raise ValueError("an ExportStore without a root keeps no exports")
        return self.root / "runtimes" / key.digest()

    def is_valid(self, key: ExportKey) -> bool:
        """Whether the cached export of ``key`` is complete and unchanged."""
        folder = self.folder(key)
        try:
            stored = json.loads((folder / "manifest.json").read_text())
            return bool(stored == _manifest(folder, key))
        except (OSError, ValueError):
            return False

    def get_or_export(self, key: ExportKey | None, export: Callable[[Path], None],
                      load: Callable[[Path], T]) -> T:
        """``load(folder)`` of the export of ``key``, calling ``export(folder)`` (which
        writes the model files into an empty ``folder``) when it is missing or damaged.
        ``key=None`` (random weights) or no root: export to a temporary folder."""
        if key is None or self.root is None:
            with tempfile.TemporaryDirectory(prefix="deephash-export-",
                                             ignore_cleanup_errors=True) as tmp:
                export(Path(tmp))
                return load(Path(tmp))
        folder = self.folder(key)
        if not self.is_valid(key):
            self._export(key, export)
        return load(folder)

    def _export(self, key: ExportKey, export: Callable[[Path], None]) -> None:
        folder = self.folder(key)
        if folder.exists():
            log.warning("export %s is incomplete or damaged; exporting it again", folder)
            shutil.rmtree(folder, ignore_errors=True)
        tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.mkdir(parents=True)
        try:
            log.info("exporting %s at %d px for %s into %s", key.backbone, key.image_size,
                     key.runtime, folder)
            export(tmp)
            save_json(tmp / "manifest.json", _manifest(tmp, key))
            try:
                os.rename(tmp, folder)
            except OSError:  # another process renamed its export into place first
                if not self.is_valid(key):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
