"""Content fingerprints of data files: the feature cache's notion of "the same data".

A digest over file names, sizes and *bytes*, so a copy of a data set (new modification
times, same content) keeps its cached features and any edit invalidates them. Reading a
large data set costs about as much as listing it twice, so the content digest can be
remembered on disk under a digest of (folder, names, sizes, modification times): an
untouched folder is hashed once, a copied or edited one once more. The memo lives in the
feature cache the command uses (:func:`memo_location`: ``<cache root>/fingerprints``), so
``--cache-dir`` keeps it there and ``--no-cache`` writes none.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from deephash.fileio import save_bytes

CHUNK = 1 << 20


def default_cache_root() -> Path:
    """``$DEEPHASH_CACHE`` or ``~/.cache/deephash``."""
    return Path(os.environ.get("DEEPHASH_CACHE") or Path.home() / ".cache" / "deephash"
                ).expanduser()


def memo_location(cache_root: Path | None) -> Path | None:
    """Where the content digests of a feature cache rooted at ``cache_root`` are
    remembered; ``None`` (no cache) gives ``None`` (no memo)."""
    return None if cache_root is None else Path(cache_root) / "fingerprints"


def stat_digest(root: Path, names: Sequence[str]) -> str:
    """SHA-256 over the absolute folder and each file's name, size and mtime (cheap)."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode() + b"\n")
    folder = os.fspath(root)  # string joins: pathlib's would cost more than the stat calls
    for name in names:
        stat = os.stat(os.path.join(folder, name))
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def entries_digest(entries: Iterable[tuple[str, int, Iterable[bytes]]]) -> str:
    """SHA-256 over each ``(name, size, byte blocks)`` entry: :func:`content_digest` of
    files held elsewhere (a pack's stored files give their folder's digest)."""
    digest = hashlib.sha256()
    for name, size, blocks in entries:
        digest.update(f"{name}\0{size}\n".encode())
        for block in blocks:
            digest.update(block)
    return digest.hexdigest()


def _blocks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            yield block


def content_digest(root: Path, names: Sequence[str]) -> str:
    """SHA-256 over each file's name, size and bytes (reads every file)."""
    return entries_digest((name, (Path(root) / name).stat().st_size, _blocks(Path(root) / name))
                          for name in names)


def content_fingerprint(root: Path, names: Sequence[str], memo_dir: Path | None = None) -> str:
    """:func:`content_digest`, remembered in ``memo_dir`` under the :func:`stat_digest` of
    the same files; ``memo_dir=None`` hashes the files and writes nothing."""
    return remembered_digest(memo_dir, root, names, lambda: content_digest(root, names))


def remembered_digest(memo_dir: Path | None, root: Path, names: Sequence[str],
                      compute: Callable[[], str]) -> str:
    """``compute()``, remembered in ``memo_dir`` under the :func:`stat_digest` of the files
    ``names`` in ``root`` it reads; ``memo_dir=None`` computes it and writes nothing."""
    if memo_dir is None:
        return compute()
    memo = Path(memo_dir) / stat_digest(root, names)
    try:
        known = memo.read_text().strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = compute()
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        save_bytes(memo, digest.encode())
    return digest
