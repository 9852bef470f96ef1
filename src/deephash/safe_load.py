"""Reading torch files safely: ``weights_only=True`` always, and one line for every failure.

Used for checkpoints (:mod:`deephash.training.checkpoint`) and backbone weights files
(:func:`deephash.backbones.base.load_state_dict_file`): a file whose pickle would import
code is refused before anything runs, and torch's many-line errors become one reason.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


class UnsafeFileError(Exception):
    """``torch.load(weights_only=True)`` failed; ``reason`` is one line, ``unsafe`` tells
    whether the pickle asked for something other than tensors and plain data."""

    def __init__(self, reason: str, unsafe: bool) -> None:
        super().__init__(reason)
        self.reason, self.unsafe = reason, unsafe


def load_failure(exc: Exception) -> UnsafeFileError:
    """One line for any way ``torch.load(weights_only=True)`` fails."""
    text = str(exc)
    unsafe = re.search(r"GLOBAL (\S+)|got <class '([^']+)'>", text)
    if isinstance(exc, pickle.UnpicklingError) and unsafe:
        name = next(g for g in unsafe.groups() if g)
        return UnsafeFileError(f"its pickle imports {name}, and loading it could run code",
                               unsafe=True)
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)  # e.g. bad opcodes
    first = detail.group(1) if detail else next(
        (line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    first = first.split(". ")[0][:160]  # torch's first sentence says what failed
    return UnsafeFileError(f"torch cannot read it ({first})", unsafe=False)


def safe_torch_load(path: Path, allow: Sequence[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, also allowing the ``allow``
    globals; raises :class:`UnsafeFileError` with a one-line reason."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(allow)):
            warnings.simplefilter("ignore")  # torch warns about foreign pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (KeyError for garbage bytes)
        raise load_failure(exc) from None
