"""``deephash hash``: compact binary codes trained in the triplet framework.

One run folder per code length (``RUN_DIR/bits-<K>/``), each with the train layout plus
``codes/query.npz`` and ``codes/database.npz`` (packed ``codes``, ``y``, ``bits``,
``index``); metrics are computed on the sign codes with Hamming distance, tie-aware.
With several code lengths, ``RUN_DIR/bits.json`` and ``bits.md`` tabulate them.
``--resume`` continues every code length that has a ``last.pt`` (a finished one is only
re-evaluated) and starts the others, so an interrupted sweep or study picks up where it
stopped.

Method ``dtsh`` (Wang, Shi & Kitani 2016): a tanh hash head trained with the DTSH
likelihood over all triplets of each batch plus λ·||u - sign(u)||²; any scalar may follow
a schedule (``--schedules margin=step:1:16``). Method ``zhuang`` (Zhuang et al. 2016):
alternating binary code inference and bit prediction (:mod:`deephash.hashing.zhuang`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from deephash.fileio import save_json
from deephash.studies.run_folder import prepare_run
from deephash.studies.tables import markdown_table
from deephash.studies.train import run_train
from deephash.training.config import TrainConfig, TrainingConfig

METHODS = ("dtsh", "zhuang")


def zhuang_training(base: TrainingConfig) -> TrainingConfig:
    """Zhuang et al.: the head's logits are trained to predict inferred bits (no tanh, no
    quantisation term); ``margin`` is in bits and ``epochs`` counts stages."""
    return dataclasses.replace(base, procedure="zhuang", activation="none", regularizers=())


def dtsh_training() -> TrainingConfig:
    """DTSH defaults: tanh codes, inner-product likelihood over all triplets, quantisation."""
    return TrainingConfig(loss="dtsh", miner="batch-all", distance="neg-half-inner",
                          reduction="mean", margin=8.0, activation="tanh", normalize=False,
                          regularizers=("quantization=0.1",), codes=True, embedding_dim=48)


@dataclass
class HashingConfig:
    method: str = field(default="dtsh", metadata={
        "choices": METHODS,
        "help": "dtsh: a hash head trained per batch with a triplet loss and miner (DTSH's "
                "likelihood, batch-all and λ 0.1 by default; --loss/--miner replace them); "
                "zhuang: alternate binary code inference and bit prediction"})
    bits: tuple[int, ...] = field(default=(48,), metadata={
        "help": "code lengths: one run folder each"})


@dataclass
class HashConfig(TrainConfig):
    out: str = field(default="runs/hash", metadata={"help": "run folder to write"})
    training: TrainingConfig = field(default_factory=dtsh_training)
    hashing: HashingConfig = field(default_factory=HashingConfig)


def run_hash(config: HashConfig) -> list[dict[str, Any]]:
    run = prepare_run(config.out, config)
    base = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    rows = []
    for bits in config.hashing.bits:
        out = run / f"bits-{bits}"
        # --resume continues the code lengths that started and begins the others
        training = dataclasses.replace(config.training, embedding_dim=bits, codes=True,
                                       resume=config.training.resume
                                       and (out / "last.pt").is_file())
        if config.hashing.method == "zhuang" and training.procedure != "zhuang":
            training = zhuang_training(training)
        metrics = run_train(TrainConfig(**{**base, "out": str(out), "training": training}))
        rows.append({"bits": bits, **metrics})
    if len(rows) > 1:
        save_json(run / "bits.json", rows)
        keys = ["map@all", *(f"map@{k}" for k in config.evaluation.map_cutoffs), "prec@r2",
                *(f"knn_acc@{k}" for k in config.evaluation.knn_k), "map@all_index_order"]
        (run / "bits.md").write_text(markdown_table(
            ["bits", *keys], [[r["bits"], *(f"{r[k]:.4f}" for k in keys)] for r in rows]))
    return rows
