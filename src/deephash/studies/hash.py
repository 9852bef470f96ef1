"""``deephash hash``: compact binary codes trained in the triplet framework.

One run folder per code length (``RUN_DIR/bits-<K>/``), each with the train layout plus
``codes/query.npz`` and ``codes/database.npz`` (packed ``codes``, ``y``, ``bits``,
``index``, and the float16 ``relaxed`` outputs that order Hamming ties where results are
shown); metrics are computed on the sign codes with Hamming distance, tie-aware.
With several code lengths, ``RUN_DIR/bits.json`` and ``bits.md`` tabulate them.
``--resume`` continues every code length that has a ``last.pt`` (a finished one is only
re-evaluated) and starts the others, so an interrupted sweep or study picks up where it
stopped.

Method ``dtsh`` (Wang, Shi & Kitani 2016): a tanh hash head trained with the DTSH
likelihood over all triplets of each batch plus λ·||u - sign(u)||²; any scalar may follow
a schedule (``--schedules margin=step:1:16``). Method ``zhuang`` (Zhuang et al. 2016):
alternating binary code inference and bit prediction (:mod:`deephash.hashing.zhuang`).
Methods ``itq`` and ``lsh``: the shallow baselines fitted on the frozen features instead of
trained (:mod:`deephash.studies.shallow`), the same folders and figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from deephash.config import variant
from deephash.devices import resolve_device
from deephash.distributed import init_from_environment, ranks
from deephash.fileio import save_json
from deephash.pipeline.protocol import open_protocol
from deephash.registries import HASHING_METHODS
from deephash.studies.configs import HashConfig, HashingConfig, dtsh_training, zhuang_training
from deephash.studies.run_folder import open_run, sub_run_flags
from deephash.studies.shallow import check_code_lengths
from deephash.studies.tables import markdown_table, metric_cell
from deephash.studies.train import run_train
from deephash.training.config import TrainConfig
from deephash.validation import validate

__all__ = ["HashConfig", "HashingConfig", "dtsh_training", "run_hash", "zhuang_training"]


def run_hash(config: HashConfig) -> list[dict[str, Any]]:
    validate(config)
    init_from_environment(resolve_device(config.extraction.device))  # torchrun: before open_run
    folder = open_run(config.out, config, resume=config.training.resume,
                      overwrite=config.overwrite, sweep=("hashing.bits",))
    _, splits = open_protocol(config)  # every image's header, the data's digest: before
    check_code_lengths(config, splits)  # the folder; a shallow method's --bits too
    with folder:
        return _sweep(config, folder.path)


def _sweep(config: HashConfig, run: Path) -> list[dict[str, Any]]:
    """One sub-run per code length in ``run``; ``bits.json`` and ``bits.md`` when several."""
    rows = []
    for bits in config.hashing.bits:
        out = run / f"bits-{bits}"
        # --resume continues the code lengths that started and begins the others
        resume, overwrite = sub_run_flags(config.training.resume, out)
        training = HASHING_METHODS.create(config.hashing.method, dataclasses.replace(
            config.training, embedding_dim=bits, codes=True, resume=resume))
        metrics = run_train(variant(config, TrainConfig, out=str(out), overwrite=overwrite,
                                    training=training))
        rows.append({"bits": bits, **metrics})
    if len(rows) > 1 and ranks().main:
        save_json(run / "bits.json", rows)
        (run / "bits.md").write_text(bits_table(rows))
    return rows


def bits_table(rows: list[dict[str, Any]]) -> str:
    """``bits.md``: one row per code length, the test figures every run has (mAP@all, each
    mAP@k in cut-off order, the protocol's own included, precision within radius 2, kNN
    accuracy where the labels define it, the index-order mAP)."""
    present = set().union(*rows)
    cutoffs = sorted(int(k[4:]) for k in present if k[4:].isdigit() and k.startswith("map@"))
    knn = sorted(int(k[8:]) for k in present if k.startswith("knn_acc@") and k[8:].isdigit())
    keys = ["map@all", *(f"map@{k}" for k in cutoffs), "prec@r2",
            *(f"knn_acc@{k}" for k in knn), "map@all_index_order"]
    return markdown_table(["bits", *keys],
                          [[r["bits"], *(metric_cell(r, k) for k in keys)] for r in rows])
