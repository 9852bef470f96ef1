"""faiss itself, imported without its loader's chatter: every ``import faiss`` of deephash
goes through here (``from deephash.index.faiss_library import faiss``).

faiss's loader logs at INFO which instruction set it loads and why a faster one failed
("Could not load library with AVX512 support due to: ModuleNotFoundError ..."): under the
command line's INFO logging every ``index`` and ``search`` printed those lines. The loader's
logger is set to WARNING before the import, so its real warnings and errors still show.
"""

from __future__ import annotations

import logging

logging.getLogger("faiss.loader").setLevel(logging.WARNING)

import faiss  # noqa: E402  (after the loader's logger is quietened)

__all__ = ["faiss"]
