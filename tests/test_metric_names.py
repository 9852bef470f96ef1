"""Readable metric names, their reading order, and the headline line a run ends with."""

from __future__ import annotations

import math
import random

from deephash.metrics.names import headline, metric_name, metric_order

#: a hashing run's metrics.json keys (a softmax run's classifier codes and a made-up key
#: added), in the order a reader wants them, with their names
READING = [
    ("map@all", "mAP@all"), ("map@1000", "mAP@1000"), ("map@5000", "mAP@5000"),
    ("p@10", "P@10"), ("p@100", "P@100"), ("knn_acc@1", "kNN@1"), ("knn_acc@5", "kNN@5"),
    ("knn_acc@10", "kNN@10"), ("prec@r2", "prec@r2"),
    ("map@all_index_order", "mAP@all (index order)"),
    ("map@1000_index_order", "mAP@1000 (index order)"),
    ("p@100_index_order", "P@100 (index order)"),
    ("knn_acc@1_index_order", "kNN@1 (index order)"),
    ("triplet_acc", "triplet accuracy"), ("pair_auc", "pair AUC"),
    ("classifier_acc", "classifier accuracy"),
    ("val_map@all", "val mAP@all"), ("val_knn_acc@10", "val kNN@10"),
    ("frozen_val_map@all", "frozen val mAP@all"), ("frozen_val_knn_acc@10", "frozen val kNN@10"),
    ("classifier_codes_map@all", "classifier codes mAP@all"),
    ("classifier_codes_bits", "classifier codes bits"),
    ("code_distinct", "distinct codes"), ("code_bit_entropy", "mean bit entropy"),
    ("protocol", "protocol"), ("distance", "distance"), ("bits", "bits"),
    ("n_query", "queries"), ("n_database", "database items"), ("best_epoch", "best epoch"),
    ("some_new_figure", "some new figure"),
]


def test_names_and_reading_order() -> None:
    keys = [key for key, _ in READING]
    shuffled = keys[:]
    random.Random(0).shuffle(shuffled)
    assert metric_order(shuffled) == keys
    assert [metric_name(key) for key in keys] == [name for _, name in READING]


def test_headline_has_the_figures_people_quote() -> None:
    metrics = {"map@all": 0.62101, "map@1000": 0.68617, "map@5000": 0.7, "knn_acc@1": 0.7361,
               "p@100": 0.67433, "p@10": 0.5, "distance": "hamming"}
    assert headline(metrics) == "mAP@all 0.6210, mAP@1000 0.6862, kNN@1 0.7361, P@100 0.6743"
    # the protocol's own cut-off in place of 1000; kNN undefined (multi-label): left out
    multi = {**metrics, "knn_acc@1": math.nan}
    assert headline(multi, cutoff=5000) == "mAP@all 0.6210, mAP@5000 0.7000, P@100 0.6743"
    assert headline({"map@all": 0.5}) == "mAP@all 0.5000"
