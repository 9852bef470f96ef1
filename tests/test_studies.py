"""select-margin, miner-study and loss-study end to end on a tiny image folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import tiny_run_args

from deephash.cli import main


def common(data: Path, cache: Path) -> list[str]:
    return [*tiny_run_args(data, cache), "--embedding-dim", "8"]


def test_select_margin_chooses_on_validation_only(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "sm"
    assert main(["select-margin", "--out", str(run), "--margins", "0.1", "0.5",
                 *common(folder, tmp_path / "c")]) == 0
    table = json.loads((run / "margins.json").read_text())
    rows = {r["margin"]: r["val_map@all"] for r in table["rows"]}
    assert set(rows) == {0.1, 0.5}
    assert table["selected_margin"] == max(rows, key=lambda m: (rows[m], -m))
    for margin in (0.1, 0.5):  # sub-runs never touch the test protocol
        assert (run / f"margin-{margin:g}" / "validation.json").is_file()
        assert not (run / f"margin-{margin:g}" / "metrics.json").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_margin"] == table["selected_margin"]
    assert metrics["val_map@all"] == rows[table["selected_margin"]]
    assert "| 0.1 |" in (run / "margins.md").read_text()


def test_select_margin_refuses_a_loss_without_margin(folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["select-margin", "--out", str(tmp_path / "x"), "--loss", "hoffer",
                 *common(folder, tmp_path / "c")]) == 2
    assert "no margin to select" in capsys.readouterr().err


def test_miner_study_table(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "ms"
    assert main(["miner-study", "--out", str(run), "--miners", "batch-hard", "curriculum",
                 *common(folder, tmp_path / "c")]) == 0
    study = json.loads((run / "study.json").read_text())
    assert [r["miner"] for r in study["rows"]] == ["batch-hard", "curriculum"]
    seconds = json.loads((run / "run.json").read_text())["seconds"]  # not in study.json
    for row in study["rows"]:
        assert 0 < seconds[f"{row['miner']}.seconds_to_95pct"] <= seconds[
            f"{row['miner']}.train_seconds"]
        assert not any("seconds" in key for key in row)
        assert 0 <= row["map@all"] <= 1
    assert (run / "study.png").is_file() and (run / "study.md").is_file()


def test_loss_study_table(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "ls"
    assert main(["loss-study", "--out", str(run), "--losses", "facenet", "hoffer",
                 "contrastive+hard-pairs", "softmax", "--margins", "0.2",
                 "--contrastive-margins", "1.5", *common(folder, tmp_path / "c")]) == 0
    study = json.loads((run / "study.json").read_text())
    methods = [r["method"] for r in study["rows"]]
    assert methods == ["baseline (frozen features)", "facenet + semi-hard", "hoffer + semi-hard",
                       "contrastive + hard-pairs", "softmax classifier"]
    assert [r["margin"] for r in study["rows"][1:]] == [0.2, None, 1.5, None]
    assert all(0 <= r["triplet_acc"] <= 1 and 0 <= r["pair_auc"] <= 1 for r in study["rows"])
    assert (run / "contrastive+hard-pairs" / "margins.json").is_file()
    assert "softmax classifier" in (run / "study.md").read_text()


def test_miner_study_picks_the_miners_that_serve_the_loss() -> None:
    from deephash.errors import ConfigError
    from deephash.miners import MINERS
    from deephash.studies.miner_study import miners_for

    pair_miners = {"all-pairs", "hard-pairs", "offline-pairs"}
    assert set(miners_for("contrastive")) == set(MINERS.names())
    assert set(miners_for("facenet")) == set(MINERS.names()) - pair_miners
    with pytest.raises(ConfigError, match="uses no miner"):
        miners_for("softmax")


def test_time_to_95_percent_of_best() -> None:
    from deephash.studies.miner_study import time_to_fraction

    history = [{"val_map": v, "elapsed_seconds": t}
               for v, t in ((0.5, 10.0), (0.76, 20.0), (0.8, 30.0), (0.79, 40.0))]
    assert time_to_fraction(history) == 20.0  # 0.76 >= 0.95 * 0.8
    assert time_to_fraction(history, 1.0) == 30.0
    unvalidated = [{"val_map": math.nan, "elapsed_seconds": 5.0}, *history]  # --validate-every
    assert time_to_fraction(unvalidated) == 20.0
    cpu = [{**h, "elapsed_cpu_seconds": h["elapsed_seconds"] / 2} for h in history]
    assert time_to_fraction(cpu, clock="elapsed_cpu_seconds") == 10.0


def test_hash_writes_codes_per_bit_length(folder: Path, tmp_path: Path) -> None:
    import numpy as np

    from deephash.metrics.evaluate_codes import evaluate_codes

    run = tmp_path / "hash"
    args = tiny_run_args(folder, tmp_path / "c")
    assert main(["hash", "--out", str(run), "--bits", "12", "24", *args]) == 0
    rows = json.loads((run / "bits.json").read_text())
    assert [r["bits"] for r in rows] == [12, 24]
    for bits in (12, 24):
        metrics = json.loads((run / f"bits-{bits}" / "metrics.json").read_text())
        assert metrics["distance"] == "hamming" and metrics["bits"] == bits
        assert 0 <= metrics["prec@r2"] <= 1 and 0 <= metrics["map@all"] <= 1
        query = np.load(run / f"bits-{bits}" / "codes" / "query.npz")
        assert query["codes"].dtype == np.uint8 and query["codes"].shape == (12, -(-bits // 8))
        assert int(query["bits"]) == bits and query["y"].dtype == np.int64
        # the relaxed outputs before the sign, kept to re-rank Hamming ties: their signs
        assert query["relaxed"].dtype == np.float16 and query["relaxed"].shape == (12, bits)
        ones = np.unpackbits(query["codes"], axis=1, count=bits).astype(bool)
        assert ((query["relaxed"] > 0) <= ones).all() and ((query["relaxed"] < 0) <= ~ones).all()
        database = np.load(run / f"bits-{bits}" / "codes" / "database.npz")
        again = evaluate_codes(query["codes"], database["codes"], query["y"], database["y"], bits)
        assert again.metrics["map@all"] == pytest.approx(metrics["map@all"])
        assert again.metrics["prec@r2"] == pytest.approx(metrics["prec@r2"])
        # code health of the database codes, recomputed from the saved codes by hand
        ones = np.unpackbits(database["codes"], axis=1, count=bits).mean(axis=0)
        assert metrics["code_bit_balance"] == pytest.approx(ones.tolist())
        assert metrics["code_distinct"] == len({row.tobytes() for row in database["codes"]})
        entropy = [-(p * np.log2(p) + (1 - p) * np.log2(1 - p)) if 0 < p < 1 else 0.0
                   for p in ones]
        assert metrics["code_bit_entropy"] == pytest.approx(np.mean(entropy))
    assert "| 24 |" in (run / "bits.md").read_text()


def test_hash_with_zhuangs_method(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "zh"
    args = tiny_run_args(folder, tmp_path / "c")
    assert main(["hash", "--method", "zhuang", "--out", str(run), "--bits", "16",
                 "--block-size", "16", *args]) == 0
    history = json.loads((run / "bits-16" / "history.json").read_text())
    assert len(history) == 2  # two stages
    assert all(h["triplets_per_batch"] == 33 * 10 for h in history)  # 10 per training image
    metrics = json.loads((run / "bits-16" / "metrics.json").read_text())
    assert metrics["distance"] == "hamming" and 0 <= metrics["map@all"] <= 1
    config = (run / "bits-16" / "config.yaml").read_text()
    assert "procedure: zhuang" in config and "activation: none" in config


def test_schedule_study_runs_each_variant_per_seed_with_its_schedule(folder: Path,
                                                                     tmp_path: Path) -> None:
    run = tmp_path / "schedules"
    args = tiny_run_args(folder, tmp_path / "c", epochs=5)
    assert main(["schedule-study", "--out", str(run), "--bits", "12", "--seeds", "0", "1",
                 "--variants", "margin=step:1:16", "none",
                 "margin=linear:2:4+quantization=constant:0.5", *args]) == 0
    study = json.loads((run / "study.json").read_text())
    assert [r["variant"] for r in study["rows"]] == [
        "margin=step:1:16", "none", "margin=linear:2:4+quantization=constant:0.5"]
    margins = {}
    for row in study["rows"]:
        values = [m["map@all"] for m in row["per_seed"]]
        assert row["map@all"] == pytest.approx(sum(values) / 2)
        assert row["map@all_spread"] == pytest.approx(max(values) - min(values))
        assert all(m["distance"] == "hamming" and m["bits"] == 12 for m in row["per_seed"])
    for folder_name in ("margin-step_1_16", "fixed", "margin-linear_2_4+quantization-constant_0.5"):
        for seed in (0, 1):
            history = json.loads(
                (run / folder_name / f"seed-{seed}" / "bits-12" / "history.json").read_text())
            margins[folder_name] = [h["margin"] for h in history]
    assert margins["margin-step_1_16"] == [1, 2, 4, 8, 16]
    assert margins["fixed"] == [16] * 5  # the study's fixed margin
    assert margins["margin-linear_2_4+quantization-constant_0.5"] == [2, 2.5, 3, 3.5, 4]
    assert "± " in (run / "study.md").read_text() and (run / "study.png").stat().st_size > 0


def test_schedule_study_rejects_bad_variants(folder: Path, tmp_path: Path) -> None:
    args = tiny_run_args(folder, tmp_path / "c", epochs=1)
    for variants in (["margin=step:1:16+margin=constant:2"], ["lr=fast"]):
        assert main(["schedule-study", "--out", str(tmp_path / "x"), "--bits", "12",
                     "--variants", *variants, *args]) == 2
    assert main(["schedule-study", "--out", str(tmp_path / "x"), "--bits", "12", "16",
                 *args]) == 2


def test_resumed_study_reuses_finished_runs_and_adds_new_seeds(folder: Path,
                                                             tmp_path: Path) -> None:
    run = tmp_path / "schedules"
    args = [*tiny_run_args(folder, tmp_path / "c", epochs=3), "--bits", "12", "--out", str(run),
            "--variants", "margin=step:1:4", "none"]
    assert main(["schedule-study", *args, "--seeds", "0"]) == 0
    first = json.loads((run / "study.json").read_text())["rows"]
    checkpoint = run / "fixed" / "seed-0" / "bits-12" / "last.pt"
    stamp = checkpoint.stat().st_mtime_ns
    assert main(["schedule-study", *args, "--seeds", "0", "1", "--resume"]) == 0
    assert checkpoint.stat().st_mtime_ns == stamp  # finished: re-evaluated, not retrained
    rows = json.loads((run / "study.json").read_text())["rows"]
    for before, after in zip(first, rows, strict=True):
        assert after["per_seed"][0]["map@all"] == pytest.approx(before["map@all"])
        assert len(after["per_seed"]) == 2
    assert (run / "fixed" / "seed-1" / "bits-12" / "metrics.json").is_file()
