"""The run-folder layout shared by every study.

    RUN_DIR/config.yaml        the exact configuration (reload with --config)
    RUN_DIR/run.json           versions, command line, git commit, device, timings
    RUN_DIR/splits.json        the protocol's pool indices
    RUN_DIR/metrics.json       flat test metrics (numbers in [0, 1]) + the distance used
    RUN_DIR/pr_curve.json/png  mean precision-recall curve of the test protocol
    RUN_DIR/tsne.png           t-SNE of a stratified sample of the query embeddings
    RUN_DIR/embeddings/{query,database}.npz   arrays x (float32), y (int64), index (int64)
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import deephash
from deephash.config import save_yaml
from deephash.data import ImageDataset, Splits
from deephash.fileio import save_json, save_npz


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def prepare_run(out: str | Path, config: Any) -> Path:
    """Create the run folder and write ``config.yaml``."""
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run / "config.yaml")
    return run


def write_run_info(run: Path, device: torch.device, timings: dict[str, float]) -> None:
    save_json(run / "run.json", {
        "deephash": deephash.__version__, "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(), "device": str(device),
        "command": sys.argv, "git_commit": _git_commit(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": timings,
    })


def write_splits(run: Path, splits: Splits, dataset: ImageDataset) -> None:
    splits.to_json(run / "splits.json", extra={
        "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
        "n_pool": len(dataset), "classes": dataset.classes,
        "pool_order": "official training part, then test part; image folders sorted by "
                      "class then file name",
    })


def write_embeddings(run: Path, name: str, x: np.ndarray, y: np.ndarray,
                     index: np.ndarray) -> None:
    save_npz(run / "embeddings" / f"{name}.npz", x=np.asarray(x, dtype=np.float32),
             y=np.asarray(y, dtype=np.int64), index=np.asarray(index, dtype=np.int64))
