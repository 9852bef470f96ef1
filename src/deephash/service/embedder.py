"""Images to a trained model's vectors: the backbone's features, then the model's head.

``deephash index`` computes the features of a whole data set (cached, through the fastest
runtime) and calls :func:`vectors_of_features`; a query (``deephash search``, the service,
the Python API's :func:`deephash.load`) runs :class:`Embedder`, which loads the backbone
and the model once and embeds a batch of decoded images in one forward pass per view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from deephash.backbones import Backbone, create_backbone
from deephash.data.transforms import TransformSpec
from deephash.features import transform_spec
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
                 test_time_flip=len(features) > 1, across_ranks=False)  # rank 0 alone


def vectors_of_outputs(outputs: np.ndarray, codes: bool) -> np.ndarray:
    """What an index holds of ``(N, D)`` outputs: ``(N, ceil(D/8))`` packed sign codes, or
    the float32 embeddings themselves."""
    return pack_codes(binarize(outputs)) if codes else np.asarray(outputs, dtype=np.float32)


def vectors_of_features(model: EmbeddingModel, features: Sequence[np.ndarray],
                        codes: bool) -> np.ndarray:
    """``(N, ceil(bits/8))`` packed codes or ``(N, D)`` float32 embeddings of ``(N, F)``
    features (:func:`outputs_of_features`, then :func:`vectors_of_outputs`)."""
    return vectors_of_outputs(outputs_of_features(model, features), codes)


#: a query as the embedder takes it: an RGB image, or its views' pixels from
#: :meth:`Embedder.prepare` (``(V, 3, S, S)`` uint8)
Query = Image.Image | torch.Tensor


class Embedder:
    """A model and its feature backbone, loaded once, on the CPU in eval mode.

    ``spec`` is the index's ``index.json["spec"]``: the transform the indexed images went
    through (size, normalisation, interpolation), applied to every query; ``backbone`` the
    model's :func:`feature_backbone`, when the caller has built it.
    """

    def __init__(self, train_config: TrainConfig, model: EmbeddingModel,
                 spec: dict[str, Any], backbone: Backbone | None = None) -> None:
        self.model = model.eval()
        self.codes = train_config.training.codes
        self.backbone = (feature_backbone(train_config) if backbone is None else backbone).eval()
        self.image_size = int(spec["image_size"])
        self.views = [TransformSpec(spec["image_size"], tuple(spec["mean"]), tuple(spec["std"]),
                                    spec["interpolation"], view)
                      for view in views_of(train_config)]
        self._pixels = [view.build_pixels() for view in self.views]

    @classmethod
    def of_model(cls, train_config: TrainConfig, model: EmbeddingModel) -> Embedder:
        """The embedder of a model without an index folder: the transform ``deephash
        index`` applies to the model's images (its backbone's preprocessing at the
        configuration's image size)."""
        backbone = feature_backbone(train_config)
        spec = transform_spec(backbone, train_config.backbone.image_size).describe()
        return cls(train_config, model, spec, backbone)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """``(V, 3, S, S)`` uint8: the pixels of each view of an RGB image (resized and
        cropped), all a query keeps of its image (the service frees the decoded image)."""
        array = np.array(image)
        return torch.stack([pixels(array) for pixels in self._pixels])

    def outputs(self, images: Sequence[Query]) -> np.ndarray:
        """``(len(images), D)`` float32 model outputs (embeddings, or relaxed codes) of RGB
        images (or their pixels from :meth:`prepare`): one backbone pass per view
        (normalised per batch: bitwise the composed transform, see
        :mod:`deephash.data.transforms`)."""
        prepared = [image if isinstance(image, torch.Tensor) else self.prepare(image)
                    for image in images]
        features = []
        with torch.inference_mode():
            for v, view in enumerate(self.views):
                batch = view.normalise(torch.stack([pixels[v] for pixels in prepared]))
                features.append(self.backbone(batch).numpy())
        return outputs_of_features(self.model, features)

    def __call__(self, images: Sequence[Query]) -> np.ndarray:
        """``(len(images), W)`` vectors of RGB images or their pixels (:meth:`outputs`,
        packed for codes)."""
        return vectors_of_outputs(self.outputs(images), self.codes)
