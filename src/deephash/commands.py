"""Every ``deephash`` subcommand: its configuration dataclass, its library function and a
one-line description (torch-free: the parser and ``deephash study`` read this table; a
command's library module is imported only when it runs)."""

from __future__ import annotations

from typing import NamedTuple

from deephash.command_configs import (
    HashConfig,
    IndexConfig,
    LossStudyConfig,
    MethodStudyConfig,
    MinerStudyConfig,
    PackConfig,
    ReportConfig,
    ScheduleStudyConfig,
    SearchConfig,
    SelectMarginConfig,
)
from deephash.pipeline.config import BaselineConfig
from deephash.service.config import ServeConfig
from deephash.studies.study_config import StudyConfig
from deephash.training.config import TrainConfig


class Command(NamedTuple):
    """A subcommand: its config dataclass, its library function (``"module:function"``,
    imported when it runs) and a one-line description."""

    config: type
    function: str
    text: str


COMMANDS: dict[str, Command] = {
    "baseline": Command(BaselineConfig, "deephash.studies.baseline:run_baseline",
                        "measure frozen pretrained features on a protocol: metrics, splits, "
                        "embeddings, PR curve and t-SNE in a run folder"),
    "train": Command(TrainConfig, "deephash.studies.train:run_train",
                     "train an embedding with a triplet loss and an online miner, keep the "
                     "best epoch on validation, evaluate it on the test protocol"),
    "select-margin": Command(SelectMarginConfig, "deephash.studies.select_margin:run_select_margin",
                             "train each margin of a grid, choose on validation, test the "
                             "winner once"),
    "miner-study": Command(MinerStudyConfig, "deephash.studies.miner_study:run_miner_study",
                           "compare miners (online and offline) at equal loss, margin, budget "
                           "and seed"),
    "loss-study": Command(LossStudyConfig, "deephash.studies.loss_study:run_loss_study",
                          "compare the baseline and each loss, each with its selected margin"),
    "hash": Command(HashConfig, "deephash.studies.hash:run_hash",
                    "train compact binary codes (one run folder per code length) and measure "
                    "them with Hamming distance, tie-aware"),
    "schedule-study": Command(ScheduleStudyConfig,
                              "deephash.studies.schedule_study:run_schedule_study",
                              "compare hyperparameter schedules of a hashing loss (e.g. margin "
                              "1 -> 16 against a fixed 16) at equal epochs and seeds, on the "
                              "sign codes"),
    "method-study": Command(MethodStudyConfig, "deephash.studies.method_study:run_method_study",
                            "compare hashing methods at several code lengths and seeds, each "
                            "method's main hyper-parameter chosen on validation: tie-aware "
                            "and index-order mAP, training time"),
    "index": Command(IndexConfig, "deephash.studies.search:build_index",
                     "index an image folder with a trained model (codes or embeddings)"),
    "search": Command(SearchConfig, "deephash.studies.search:search_image",
                      "print the k nearest indexed images to a query image"),
    "serve": Command(ServeConfig, "deephash.service.serve:run_serve",
                     "serve an index folder over HTTP (search by image or item id, add "
                     "images, a web page at /), the model and index loaded once"),
    "study": Command(StudyConfig, "deephash.studies.study:run_study",
                     "run the whole study from one YAML (a preset or your own): one run "
                     "folder per stage, finished stages reused, an interrupted study "
                     "continued, then report.html"),
    "report": Command(ReportConfig, "deephash.reporting:run_report",
                      "write report.html (self-contained: plots and thumbnails embedded, "
                      "opens offline) and report.md from finished run folders"),
    "pack": Command(PackConfig, "deephash.studies.pack:run_pack",
                    "write a data set into one file (its images' own encoded bytes, labels, "
                    "classes and order), readable by every command as --data-dir FILE"),
}
