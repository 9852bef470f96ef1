"""Training time on two clocks, the machine's load while a run trains, and the miners
trained in turn (issue 26): CPU time recorded beside wall-clock and plausible, load
fields in run.json, the report's and the stage table's mark on times taken under load,
OpenMP's idle threads set to sleep, and interleaved miners scoring exactly as in sequence,
also after an interruption and --resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import make_image_folder, tiny_run_args

import deephash.machine as machine_module
import deephash.training.clock as clock_module
import deephash.training.epochs as epochs_module
from deephash.cli import main
from deephash.machine import LOADED, combined_load, load_summary, usable_cores
from deephash.reporting.readme import stages_markdown
from deephash.reporting.summary import COLUMNS, rows_markdown
from deephash.training.clock import Stopwatch

CORES = usable_cores()


def burn(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU time."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


def test_the_cpu_clock_counts_every_thread_and_finished_children() -> None:
    clock = Stopwatch()
    helper = threading.Thread(target=burn, args=(0.2,))
    helper.start()
    burn(0.2)
    helper.join()
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\n"
                    "while time.process_time() - t < 0.2: pass"], check=True)
    lap = clock.read()
    assert lap.cpu >= 0.6 - 0.02  # both threads and the reaped child process
    assert lap.cpu <= lap.wall * CORES + 0.1


def test_load_summary_by_hand() -> None:
    # without measured waits: the mean load average against the cores
    assert load_summary([2.0, 3.0, math.nan], cores=2) == {
        "cores": 2, "load_mean": 2.5, "load_max": 3.0, "samples": 2, "cpu_wait_fraction": None,
        "over_cores": True}
    assert load_summary([2.0, 2.0], cores=2)["over_cores"] is False  # type: ignore[index]
    # a quiet run's own threads touch the core count at one sample: the mean decides
    assert load_summary([1.2, 2.13, 1.6], cores=2)["over_cores"] is False  # type: ignore[index]
    assert load_summary([math.nan], cores=2) is None and load_summary([]) is None
    # with waits, they decide: a run filling the cores alone reads a load above them
    alone = load_summary([2.3, 2.4], cores=2, waits=[0.02, 0.03], cpus=[1.0, 1.5])
    assert alone["cpu_wait_fraction"] == 0.02 and alone["over_cores"] is False  # type: ignore[index]
    shared = load_summary([1.5, 1.5], cores=2, waits=[1.0, math.nan], cpus=[2.0, 1.0])
    assert shared["cpu_wait_fraction"] == 0.5 and shared["over_cores"] is True  # type: ignore[index]
    # a share read off a few hundredths of a second of work is noise, not load
    blip = load_summary([0.1], cores=2, waits=[0.013], cpus=[0.03])
    assert blip["cpu_wait_fraction"] == 0.433 and blip["over_cores"] is False  # type: ignore[index]
    quiet = load_summary([1.0], cores=4)
    busy = load_summary([5.0, 7.0, 9.0], cores=2)
    assert combined_load([quiet, busy]) == {  # type: ignore[list-item]
        "cores": 2, "load_mean": 5.5, "load_max": 9.0, "samples": 4, "cpu_wait_fraction": None,
        "over_cores": True}
    assert combined_load([alone, shared])["cpu_wait_fraction"] == 0.26  # type: ignore[index]
    assert combined_load([]) is None


def test_the_wait_clock_sees_another_process_take_the_core() -> None:
    """This process and a busy one pinned to one core: the busy loop here waits for the core
    about as long as it runs (on a quiet core it would hardly wait)."""
    from deephash.training.clock import cpu_wait_seconds

    if not math.isfinite(cpu_wait_seconds()):
        pytest.skip("this kernel reports no run-queue waits")
    core = min(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", "import os, time\n"
                             f"os.sched_setaffinity(0, {{{core}}})\nt = time.time()\n"
                             "while time.time() - t < 1.5: pass"])
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        time.sleep(0.3)  # the busy process is running
        clock = Stopwatch()
        start = time.process_time()
        while time.process_time() - start < 0.4:
            pass
        lap = clock.read()
    finally:
        os.sched_setaffinity(0, previous)
        busy.wait()
    assert lap.wait > 0.2 * lap.cpu


def train(data: Path, out: Path, cache: Path, load: float,
          monkeypatch: pytest.MonkeyPatch, waited: float = 0.0) -> None:
    """A tiny run with injected load samples and run-queue waits (``waited`` of its CPU
    time)."""
    monkeypatch.setattr(epochs_module, "load_sample", lambda: load)
    monkeypatch.setattr(clock_module, "cpu_wait_seconds",
                        lambda: waited * clock_module.cpu_seconds())
    monkeypatch.setattr(machine_module, "MIN_WAIT_SECONDS", 0.0)  # a tiny run's seconds
    assert main(["train", *tiny_run_args(data, cache, epochs=3), "--embedding-dim", "8",
                 "--out", str(out)]) == 0


def test_a_run_records_cpu_time_and_load_and_the_report_marks_loaded_timings(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    train(folder, runs / "quiet", tmp_path / "c", CORES - 0.5, monkeypatch)
    train(folder, runs / "busy", tmp_path / "c", CORES + 1.5, monkeypatch, waited=0.5)
    history = json.loads((runs / "quiet" / "history.json").read_text())
    assert len(history) == 3
    for h in history:
        assert 0 < h["train_cpu_seconds"] <= h["train_seconds"] * CORES + 0.05
        assert h["load_average"] == CORES - 0.5
    elapsed = [h["elapsed_cpu_seconds"] for h in history]
    assert elapsed == sorted(elapsed) and elapsed[0] >= history[0]["train_cpu_seconds"]
    info = json.loads((runs / "quiet" / "run.json").read_text())
    assert info["cpu_seconds"]["train"] == elapsed[-1]
    assert info["seconds"]["train"] == history[-1]["elapsed_seconds"]  # wall-clock stays
    assert info["load"] == {"cores": CORES, "load_mean": CORES - 0.5, "load_max": CORES - 0.5,
                            "samples": 3, "cpu_wait_fraction": 0.0, "over_cores": False}
    assert "omp_wait" in info["machine"]
    busy = json.loads((runs / "busy" / "run.json").read_text())["load"]
    assert busy["over_cores"] is True and busy["load_max"] == CORES + 1.5
    assert busy["cpu_wait_fraction"] == 0.5

    assert main(["report", str(runs), "--out", str(tmp_path / "report")]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    rows = {row["run"]: row for row in summary["rows"]}
    assert rows["quiet"]["train_cpu_seconds"] == elapsed[-1]
    markdown = (tmp_path / "report" / "report.md").read_text()
    lines = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines()
             if line.startswith("| ")}
    assert "training (CPU)" in lines["run"]
    assert LOADED in lines["busy"] and LOADED not in lines["quiet"]
    assert f"{LOADED} trained while other jobs shared the machine's {CORES} usable cores " \
           f"(its threads waited for a core up to 50% of their CPU time, 1-minute load " \
           f"average up to {CORES + 1.5:.1f})" in markdown
    page = (tmp_path / "report" / "report.html").read_text()
    assert "training (CPU)" in page and "shared the machine" in page


def row(run: str, wall: float | None, cpu: float | None = None,
        load: dict[str, object] | None = None) -> dict[str, object]:
    return {"run": run, "method": "m", "protocol": "p", **{c.key: None for c in COLUMNS},
            "train_seconds": wall, "train_cpu_seconds": cpu, "load": load}


def test_the_summary_says_which_clock_and_marks_loaded_rows() -> None:
    busy = load_summary([5.0], cores=2)
    old = rows_markdown([row("a", 63.0), {k: v for k, v in row("b", 70.0).items()
                                          if k not in ("train_cpu_seconds", "load")}])
    assert "| training (wall-clock) |" in old and "| **63 s** |" in old
    assert LOADED not in old and "(wall)" not in old
    new = rows_markdown([row("a", 63.0, 40.0), row("b", 70.0, 50.0, busy)])
    assert "| training (CPU) |" in new and "| **40 s** |" in new and f"| 50 s {LOADED} |" in new
    assert "shared the machine's 2 usable cores (1-minute load average up to 5.0)" in new
    mixed = rows_markdown([row("a", 63.0, 40.0), row("b", 70.0)])
    assert "| **40 s** |" in mixed and "| **70 s (wall)** |" in mixed  # no comparing clocks


def test_a_study_tables_footnote_shows_under_its_table_in_the_html_page(tmp_path: Path) -> None:
    from deephash.reporting.html import table_html
    from deephash.reporting.studies import StudyTable

    text = "| miner | CPU s |\n|---|---|\n| a | 3 † |\n\n† trained while the load ...\n"
    page = table_html(StudyTable(tmp_path, "miners", text))
    assert "<td>3 †</td>" in page and '<p class="note">† trained while the load ...</p>' in page


def test_the_stage_table_marks_stages_trained_under_load() -> None:
    stages = [{"name": "baseline", "command": "baseline", "state": "ran", "seconds": 60.0},
              {"name": "miners", "command": "miner-study", "state": "ran", "seconds": 120.0,
               "load": load_summary([1.0, 4.5], cores=2)},
              {"name": "codes", "command": "hash", "state": "ran", "seconds": 30.0,
               "load": load_summary([1.0], cores=2)}]
    table = stages_markdown({"seconds": 210.0, "stages": stages})
    assert f"| miners | miner-study | ran | 2.0 min {LOADED} |" in table
    assert "| codes | hash | ran | 0.5 min |" in table
    assert "| baseline | baseline | ran | 1.0 min |" in table
    assert table.count(LOADED) == 2 and "load average up to 4.5)" in table  # mark, footnote
    assert LOADED not in stages_markdown({"seconds": 1.0, "stages": stages[:1]})


@pytest.mark.parametrize("given, expected", [({}, "PASSIVE"), ({"GOMP_SPINCOUNT": "300000"}, None),
                                             ({"OMP_WAIT_POLICY": "active"}, "active")])
def test_deephash_asks_openmp_threads_to_sleep_unless_the_user_chose(
        given: dict[str, str], expected: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", "import os, deephash.omp as o\n"
                          "print(os.environ.get('OMP_WAIT_POLICY'), o.wait_policy(), sep='|')"],
                         env={**env, **given}, capture_output=True, text=True, check=True)
    policy, words = out.stdout.strip().split("|")
    assert policy == str(expected)
    assert ("set by deephash" in words) == (not given)


def test_torch_loaded_first_keeps_its_policy() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", "import os, torch, deephash\n"
                          "print(os.environ.get('OMP_WAIT_POLICY'))"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


MINERS = ("batch-hard", "semi-hard")


def miner_study(data: Path, cache: Path, out: Path, *extra: str) -> int:
    """Two miners with dropout (torch's global generator in every epoch), 3 epochs,
    validation every second epoch and the last."""
    return main(["miner-study", "--out", str(out), "--miners", *MINERS, "--dropout", "0.3",
                 "--validate-every", "2", *tiny_run_args(data, cache, epochs=3),
                 "--embedding-dim", "8", *extra])


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Data, cache and a miner study trained one miner after the other."""
    root = tmp_path_factory.mktemp("miners")
    data = make_image_folder(root / "data", n_classes=3, n_train=12, n_test=4)
    assert miner_study(data, root / "cache", root / "sequential") == 0
    return data, root / "cache", root / "sequential"


QUALITY = ("loss", "active_fraction", "mean_positive_distance", "mean_negative_distance",
           "embedding_norm", "triplets_per_batch", "empty_batches", "val_map", "val_knn")


def assert_same_scores(one: Path, other: Path) -> None:
    assert (one / "study.json").read_bytes() == (other / "study.json").read_bytes()
    for miner in MINERS:
        for name in ("metrics.json", "validation.json", "splits.json"):
            assert (one / miner / name).read_bytes() == (other / miner / name).read_bytes()
        histories = [json.loads((run / miner / "history.json").read_text())
                     for run in (one, other)]
        assert [[h[k] for k in QUALITY] for h in histories[0]] == \
               [[h[k] for k in QUALITY] for h in histories[1]]


def test_interleaved_miners_score_exactly_as_in_sequence(
        sequential: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache, first = sequential
    order: list[str] = []
    original = epochs_module.epoch_steps

    def epoch_steps(setup, procedure, run, *args):
        return (yield from _recorded(original(setup, procedure, run, *args), Path(run).name,
                                     order))

    monkeypatch.setattr("deephash.training.trainer.epoch_steps", epoch_steps)
    monkeypatch.setattr(epochs_module, "load_sample", lambda: CORES + 1.0)
    monkeypatch.setattr(clock_module, "cpu_wait_seconds", clock_module.cpu_seconds)  # waits = CPU
    monkeypatch.setattr(machine_module, "MIN_WAIT_SECONDS", 0.0)
    assert miner_study(data, cache, tmp_path / "interleaved", "--interleave") == 0
    assert order == [m for _ in range(3) for m in MINERS]  # one epoch of each in turn
    assert_same_scores(first, tmp_path / "interleaved")
    table = (tmp_path / "interleaved" / "study.md").read_text()
    assert "| CPU s/epoch (train) | CPU s to 95% of best val | total CPU s |" in table
    for line in table.splitlines()[2:4]:  # every time of both miners marked
        assert line.count(f" {LOADED} |") == 3
    assert f"{LOADED} trained while other jobs shared the machine's" in table
    info = json.loads((tmp_path / "interleaved" / "run.json").read_text())
    for miner in MINERS:
        history = json.loads((tmp_path / "interleaved" / miner / "history.json").read_text())
        assert info["cpu_seconds"][f"{miner}.train_seconds"] == history[-1]["elapsed_cpu_seconds"]
        assert info["seconds"][f"{miner}.train_seconds"] == history[-1]["elapsed_seconds"]
    assert info["load"]["samples"] == 6 and info["load"]["cores"] == CORES


def _recorded(steps, name, order):
    """``steps``, noting ``name`` in ``order`` at each epoch."""
    while True:
        try:
            record = next(steps)
        except StopIteration as done:
            return done.value
        order.append(name)
        yield record


def test_an_interrupted_interleaved_study_resumes_to_the_same_scores(
        sequential: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    data, cache, first = sequential
    samples = iter(range(100))

    def interrupting() -> float:
        if next(samples) == 2:  # the first miner's second epoch, after both firsts
            raise KeyboardInterrupt
        return 0.0

    monkeypatch.setattr(epochs_module, "load_sample", interrupting)
    monkeypatch.setattr(clock_module, "cpu_wait_seconds", lambda: 0.0)  # a quiet machine
    out = tmp_path / "interleaved"
    assert miner_study(data, cache, out, "--interleave") == 130
    stopped = json.loads((out / MINERS[1] / "run.json").read_text())
    assert stopped["state"] == "failed" and stopped["error"].startswith("stopped: a run it")
    assert json.loads((out / MINERS[0] / "run.json").read_text())["error"] == \
        "interrupted (KeyboardInterrupt)"
    monkeypatch.setattr(epochs_module, "load_sample", lambda: 0.0)
    assert miner_study(data, cache, out, "--interleave", "--resume") == 0
    assert_same_scores(first, out)
    assert LOADED not in (out / "study.md").read_text()  # load 0: nothing marked
    for miner in MINERS:  # each continued after its first epoch
        assert len(json.loads((out / miner / "history.json").read_text())) == 3


def test_a_resumed_study_may_switch_between_sequence_and_turns() -> None:
    from deephash.studies.configs import MinerStudyConfig
    from deephash.studies.run_folder import config_changes, saved_config

    saved = saved_config(MinerStudyConfig(miners=MINERS))
    assert config_changes(saved, MinerStudyConfig(miners=MINERS, interleave=True)) == []
    assert config_changes(saved, MinerStudyConfig(miners=MINERS[:1])) != []
