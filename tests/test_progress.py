"""Progress: tqdm bars on a terminal, a log line every few seconds elsewhere (a log file,
CI, nohup), nothing with ``DEEPHASH_PROGRESS=0``; timed with a fake clock."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from deephash import progress as progress_module
from deephash.cli import main
from deephash.errors import ConfigError
from deephash.progress import LogProgress, progress, progress_bar, progress_mode


class FakeClock:
    """Stands in for the ``time`` module of :mod:`deephash.progress`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> FakeClock:
    """Not a terminal (pytest captures stderr), progress not switched off, lines every 5 s."""
    fake = FakeClock()
    monkeypatch.setattr(progress_module, "time", fake)
    for name in ("DEEPHASH_PROGRESS", "RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEEPHASH_PROGRESS_EVERY", "5")
    monkeypatch.setattr(progress_module.log, "level", logging.NOTSET)  # an earlier -q
    caplog.set_level(logging.INFO, logger="deephash.progress")
    return fake


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "deephash.progress"]


def test_a_log_line_every_few_seconds_with_rate_and_time_left(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    bar = progress_bar(60_000, "extracting features", unit="img")
    assert isinstance(bar, LogProgress)
    clock.now += 4
    bar.update(6_000)
    assert lines(caplog) == []  # before the first interval: nothing
    clock.now += 26
    bar.update(6_000)  # 12,000 in 30 s: 400/s, 48,000 left: 2 min
    clock.now += 2
    bar.update(100)  # 2 s after the last line: none
    clock.now += 148
    bar.update(47_900)
    bar.close()
    assert lines(caplog) == [
        "extracting features: 12,000/60,000 img (20 %), 400 img/s, about 2 min left",
        "extracting features: 60,000/60,000 img (100 %), 333 img/s",
        "extracting features: 60,000/60,000 img done in 3 min (333 img/s)"]


def test_short_work_logs_nothing_and_a_resumed_count_is_not_a_rate(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    bar = progress_bar(100, "quick")
    clock.now += 4
    bar.update(100)
    bar.close()
    assert lines(caplog) == []
    bar = progress_bar(1_000, "pack data.pack", unit="img", initial=900)  # 900 from a shard
    clock.now += 50
    bar.update(50)  # 1 img/s since the start, whatever was there before
    assert lines(caplog) == ["pack data.pack: 950/1,000 img (95 %), 1.0 img/s, about 50 s left"]


def test_an_iterable_and_a_total_unknown(clock: FakeClock,
                                         caplog: pytest.LogCaptureFixture) -> None:
    def slow(n: int):
        for i in range(n):
            clock.now += 3
            yield i

    assert list(progress(slow(4), desc="queries")) == [0, 1, 2, 3]
    assert lines(caplog) == ["queries: 2, 0.33/s", "queries: 4, 0.33/s",
                             "queries: 4 done in 12 s (0.33/s)"]
    caplog.clear()
    assert list(progress([7, 8], desc="two", unit="batch")) == [7, 8]  # a list: its length
    clock.now += 10
    bar = progress_bar(3, "rates", unit="batch")
    clock.now += 7200
    bar.update(1)
    assert lines(caplog) == ["rates: 1/3 batch (33 %), 0.00014 batch/s, about 4 h 00 min left"]


@pytest.mark.parametrize(("setting", "terminal", "rank", "mode"), [
    (None, False, None, "log"), (None, True, None, "bar"), ("0", True, None, "off"),
    ("0", False, None, "off"), ("1", False, None, "bar"), ("log", True, None, "log"),
    (None, False, "1", "off"), (None, True, "0", "bar")])
def test_where_progress_goes(clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
                             caplog: pytest.LogCaptureFixture, setting: str | None,
                             terminal: bool, rank: str | None, mode: str) -> None:
    for name, value in (("DEEPHASH_PROGRESS", setting), ("RANK", rank)):
        if value is not None:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(progress_module, "sys",
                        SimpleNamespace(stderr=SimpleNamespace(isatty=lambda: terminal)))
    assert progress_mode() == mode
    bar = progress_bar(10, "work")
    assert isinstance(bar, LogProgress) == (mode == "log")
    clock.now += 60
    bar.update(5)
    bar.close()
    assert len(lines(caplog)) == (2 if mode == "log" else 0)


def test_quiet_silences_progress_and_a_bad_interval_is_one_line(
        clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["-q", "list", "miners"]) == 0
    assert progress_mode() == "off"  # deephash -q: no bar, no line
    assert main(["list", "miners"]) == 0
    assert progress_mode() == "log"
    for bad in ("soon", "0", "-5", "inf", "nan"):
        monkeypatch.setenv("DEEPHASH_PROGRESS_EVERY", bad)
        with pytest.raises(ConfigError, match=r"^DEEPHASH_PROGRESS_EVERY must be a number of "
                                              r"seconds above 0, got"):
            progress_bar(10, "work")
    monkeypatch.setenv("DEEPHASH_PROGRESS_EVERY", "0.5")
    assert progress_bar(10, "work").every == 0.5  # type: ignore[attr-defined]
