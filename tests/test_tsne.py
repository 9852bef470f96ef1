from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from deephash.viz.tsne import stratified_sample, tsne_plot


def test_stratified_sample_balances_classes() -> None:
    labels = np.repeat([0, 1, 2], [500, 300, 7])
    sample = stratified_sample(labels, 100, seed=0)
    counts = np.bincount(labels[sample])
    assert len(sample) == 100 and counts[2] == 7  # a small class gives all it has
    assert abs(int(counts[0]) - int(counts[1])) <= 1
    assert np.array_equal(sample, stratified_sample(labels, 100, seed=0))
    assert not np.array_equal(sample, stratified_sample(labels, 100, seed=1))
    assert len(stratified_sample(labels, 5000, seed=0)) == len(labels)


def test_tsne_plot_writes_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 60)) + labels[:, None] * 4.0
    sample = tsne_plot(x, labels, ["a", "b", "c"], tmp_path / "t.png", n_points=90, seed=0)
    assert len(sample) == 90
    with Image.open(tmp_path / "t.png") as image:
        assert image.size[0] > 400 and image.size[1] > 400
