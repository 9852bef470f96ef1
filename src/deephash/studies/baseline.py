"""The baseline study: frozen pretrained features, measured on a protocol.

``run_baseline`` opens the data set, writes the seeded splits, extracts (or reads cached)
backbone features of every pool image (shared between the processes under torchrun:
:mod:`deephash.features.cache`), and evaluates them: validation queries against
the training part (for later model selection) and the test protocol (query against
database), with kNN accuracy, mAP, precision@k, a PR curve and a t-SNE map.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from deephash.devices import resolve_device
from deephash.distributed import init_from_environment, ranks
from deephash.pipeline.cache import cache_location
from deephash.pipeline.config import BaselineConfig
from deephash.pipeline.features import load_features
from deephash.pipeline.protocol import open_protocol, skipped_run_details, write_splits
from deephash.pipeline.results import validation_report, write_results
from deephash.studies.run_folder import open_run
from deephash.validation import validate

log = logging.getLogger(__name__)

#: the shared steps, now in :mod:`deephash.pipeline`, keep their old import place
__all__ = ["cache_location", "load_features", "open_protocol", "run_baseline"]


def run_baseline(config: BaselineConfig) -> dict[str, Any]:
    """Run the study into ``config.out``; returns the metrics written to ``metrics.json``."""
    validate(config)
    device = init_from_environment(resolve_device(config.extraction.device))  # torchrun
    folder = open_run(config.out, config, overwrite=config.overwrite)
    dataset, splits = open_protocol(config)
    folder.details.update(skipped_run_details(dataset))
    with folder:
        run = folder.path
        folder.device = str(device)
        if ranks().main:
            write_splits(run, splits, dataset)
        log.info("%s: %d images, %d classes; protocol %s: %s", dataset.name, len(dataset),
                 len(dataset.classes), splits.protocol, splits.sizes())
        start = time.perf_counter()
        features = load_features(config, dataset, device)["identity"]
        if not ranks().main:  # torchrun: the ranks shared the extraction; rank 0 evaluates
            return {}
        folder.seconds["features"] = time.perf_counter() - start
        val = validation_report(features, dataset.labels, splits, config.evaluation)
        folder.seconds["validation"] = time.perf_counter() - start - folder.seconds["features"]
        title = f"{config.backbone.name} {config.backbone.image_size}px on {dataset.name}"
        metrics = write_results(run, features, dataset, splits, config.evaluation, config.seed,
                                title,
                                extra_metrics={f"val_{k}": v for k, v in val.metrics.items()})
    return metrics
