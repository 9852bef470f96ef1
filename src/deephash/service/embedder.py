"""Images to a trained model's vectors: the backbone's features, then the model's head.

``deephash index`` computes the features of a whole data set (cached, through the fastest
runtime) and calls :func:`vectors_of_features`; a query (``deephash search``, the service)
runs :class:`Embedder`, which loads the backbone and the model once and embeds a batch of
decoded images in one forward pass per view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from deephash.backbones import Backbone, create_backbone
from deephash.data.transforms import TransformSpec
from deephash.hashing.codes import binarize, pack_codes
from deephash.training.config import TrainConfig
from deephash.training.inputs import FeatureInputs
from deephash.training.model import EmbeddingModel, partial_split
from deephash.training.trainer import embed


def feature_backbone(train_config: TrainConfig) -> Backbone:
    """What computes a model's inputs from images: the frozen backbone, or in partial mode
    the prefix before its trained blocks."""
    if train_config.training.mode == "partial":
        return partial_split(train_config)[0]
    return create_backbone(train_config.backbone.name, train_config.backbone.weights)


def views_of(train_config: TrainConfig) -> tuple[str, ...]:
    """The image views whose embeddings are averaged, as in the model's evaluation."""
    return ("identity", "hflip") if train_config.training.test_time_flip else ("identity",)


def outputs_of_features(model: EmbeddingModel, features: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, D)`` float32 model outputs (embeddings, or a hashing model's relaxed codes) of
    ``(N, F)`` features, ``features[1]`` being the mirrored view when the model is
    evaluated with test-time flip (as in training)."""
    inputs = FeatureInputs(features[0], features[1] if len(features) > 1 else None, seed=0,
                           augment=False)
    return embed(model, inputs, np.arange(len(features[0])), torch.device("cpu"),
                 test_time_flip=len(features) > 1)


def vectors_of_outputs(outputs: np.ndarray, codes: bool) -> np.ndarray:
    """What an index holds of ``(N, D)`` outputs: ``(N, ceil(D/8))`` packed sign codes, or
    the float32 embeddings themselves."""
    return pack_codes(binarize(outputs)) if codes else np.asarray(outputs, dtype=np.float32)


def vectors_of_features(model: EmbeddingModel, features: Sequence[np.ndarray],
                        codes: bool) -> np.ndarray:
    """``(N, ceil(bits/8))`` packed codes or ``(N, D)`` float32 embeddings of ``(N, F)``
    features (:func:`outputs_of_features`, then :func:`vectors_of_outputs`)."""
    return vectors_of_outputs(outputs_of_features(model, features), codes)


class Embedder:
    """A model and its feature backbone, loaded once, on the CPU in eval mode.

    ``spec`` is the index's ``index.json["spec"]``: the transform the indexed images went
    through (size, normalisation, interpolation), applied to every query.
    """

    def __init__(self, train_config: TrainConfig, model: EmbeddingModel,
                 spec: dict[str, Any]) -> None:
        self.model = model.eval()
        self.codes = train_config.training.codes
        self.backbone = feature_backbone(train_config).eval()
        self.transforms: list[Callable[[Image.Image], torch.Tensor]] = [
            TransformSpec(spec["image_size"], tuple(spec["mean"]), tuple(spec["std"]),
                          spec["interpolation"], view).build()
            for view in views_of(train_config)]

    def outputs(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(len(images), D)`` float32 model outputs of RGB images (embeddings, or relaxed
        codes): one backbone pass per view."""
        features = []
        with torch.inference_mode():
            for transform in self.transforms:
                batch = torch.stack([transform(image) for image in images])
                features.append(self.backbone(batch).numpy())
        return outputs_of_features(self.model, features)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(len(images), W)`` vectors of RGB images (:meth:`outputs`, packed for codes)."""
        return vectors_of_outputs(self.outputs(images), self.codes)
