"""The end of a test run says how many browser tests skipped for want of Chromium
(``./run tests`` on a fresh machine; only ``.ci/run`` installs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INNER = """
import pytest
from tests.conftest import NO_CHROMIUM

@pytest.mark.skipif(True, reason=NO_CHROMIUM)
@pytest.mark.parametrize("page", ["report", "search"])
def test_page(page):
    pass

@pytest.mark.skip(reason="something else")
def test_other():
    pass

def test_passes():
    pass
"""


def test_the_run_ends_counting_the_skipped_browser_tests(pytester: pytest.Pytester) -> None:
    root = Path(__file__).resolve().parents[1]
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(root)!r})\n"
                          "from tests.conftest import pytest_terminal_summary\n")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["2 browser test(s) skipped: no Chromium; .ci/run installs it "
                                 "(apt-get install chromium)"])
    quiet = pytester.runpytest_inprocess("-k", "passes or other")  # no browser test skipped
    quiet.assert_outcomes(passed=1, skipped=1)
    quiet.stdout.no_fnmatch_line("*browser test*")
