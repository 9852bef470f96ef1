"""The public API: ``deephash.__all__``, what docs/api.md lists and runs, and a cheap
``import deephash``."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

import deephash

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def code_block(heading: str) -> str:
    """The first ```python block after ``heading`` in docs/api.md."""
    text = API_DOC.read_text()
    after = text[text.index(f"\n{heading}\n"):]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


def test_the_documented_training_loop_runs_and_learns() -> None:
    """docs/api.md's PML-style loop, run as written: the loss of every triplet of the set
    falls epoch by epoch to well below where it started, and the classes separate."""
    namespace: dict[str, object] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code_block("## A PML-style training loop"), str(API_DOC), "exec"),
             namespace)
    history = namespace["history"]
    assert isinstance(history, list) and len(history) == 6
    assert history[-1] < 0.5 * history[0]
    assert float(namespace["final_map"]) > 0.9  # type: ignore[arg-type]
    assert printed.getvalue().startswith("loss of all triplets by epoch:")


def test_all_lists_the_public_names_and_each_resolves() -> None:
    assert sorted(deephash.__all__) == sorted(["__version__", *deephash._PUBLIC])
    for name in deephash.__all__:
        assert getattr(deephash, name) is not None
    assert set(deephash.__all__) <= set(dir(deephash))
    assert deephash.load.__module__ == "deephash.inference"
    assert deephash.create_loss("facenet", 0.2).name == "facenet"
    with pytest.raises(AttributeError, match="no attribute 'not_public'"):
        deephash.not_public  # noqa: B018


def test_docs_list_every_public_name() -> None:
    text = API_DOC.read_text()
    missing = [name for name in deephash.__all__ if name != "__version__" and
               f"`{name}" not in text]
    assert not missing


def test_import_deephash_loads_no_torch() -> None:
    code = ("import sys, deephash; names = deephash.__all__; "
            "print([m for m in ('torch', 'numpy', 'faiss') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
