"""A trained model as a Python object: ``deephash.load(checkpoint).embed(images)``.

:func:`load` reads a checkpoint as ``deephash index`` and ``deephash search`` do
(:func:`deephash.training.checkpoint.load_model`) and wraps the search path's
:class:`~deephash.service.embedder.Embedder`: the same decoding of image files
(:func:`deephash.service.downscale.decode_query`), the same transform (the backbone's
preprocessing at the run's image size, with the test-time flip where the run used it) and
the same forward pass, so an image's vector here is the vector ``search`` computes for it
and, up to the feature runtime's rounding, the one ``index`` stored.

Images are PIL images, ``(H, W, 3)`` uint8 arrays (RGB) or paths of image files, one or a
sequence of them (an ``(N, H, W, 3)`` array is N images). A file is decoded as ``search``
decodes its query (a very large one reduced by a power of two while decoding); a PIL
image or an array is taken as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from deephash.data.decode import to_rgb
from deephash.errors import ConfigError, DataError
from deephash.hashing.codes import binarize
from deephash.service.downscale import decode_query
from deephash.service.embedder import Embedder
from deephash.training.checkpoint import load_model
from deephash.training.config import TrainConfig

#: one image: a PIL image, an ``(H, W, 3)`` uint8 RGB array, or the path of an image file
ImageLike = Image.Image | np.ndarray | str | Path

#: images embedded per forward pass (bounds the memory of a long list)
BATCH_SIZE = 64


class ImageEmbedder:
    """A checkpoint's model, ready to embed images (CPU, eval mode); see the module
    docstring. ``config`` is the run's configuration, ``codes`` whether it is a hashing
    model, ``dim`` its output width (D, or the code length K)."""

    def __init__(self, config: TrainConfig, embedder: Embedder, source: Path) -> None:
        self.config = config
        self._embedder = embedder
        self.source = source

    @property
    def codes(self) -> bool:
        return bool(self.config.training.codes)

    @property
    def dim(self) -> int:
        return int(self.config.training.embedding_dim)

    def embed(self, images: ImageLike | Iterable[ImageLike]) -> np.ndarray:
        """``(N, D)`` float32: the model's outputs for N images (a hashing model's relaxed
        codes, whose signs :meth:`hash` gives); a single image gives one row. Images are
        decoded and embedded :data:`BATCH_SIZE` at a time."""
        items = _as_list(images)
        size = self._embedder.image_size
        parts = [self._embedder.outputs([_as_image(item, size)
                                         for item in items[start:start + BATCH_SIZE]])
                 for start in range(0, len(items), BATCH_SIZE)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def hash(self, images: ImageLike | Iterable[ImageLike]) -> np.ndarray:
        """``(N, K)`` int8 sign codes in {-1, +1} (sign(0) = +1) of a hashing model;
        ``deephash.hashing.codes.pack_codes`` packs them as an index stores them.
        ``ConfigError`` for a model that does not learn codes."""
        if not self.codes:
            raise ConfigError(f"{self.source} is a float embedding model, not a hashing model; "
                              "use .embed(images)")
        return binarize(self.embed(images))

    def __repr__(self) -> str:
        kind = f"{self.dim}-bit hashing" if self.codes else f"{self.dim}-d embedding"
        return f"ImageEmbedder({str(self.source)!r}, {kind} model)"


def load(checkpoint: str | Path) -> ImageEmbedder:
    """The model of a run's checkpoint (``best.pt``; a hashing run's ``bits-K/best.pt``) as
    an :class:`ImageEmbedder`. ``ConfigError`` for a file that is not a usable checkpoint
    and for a fine-tuned model (``--mode finetune``), which ``deephash index`` refuses
    too."""
    path = Path(checkpoint).expanduser()
    config, model = load_model(path)  # a one-line ConfigError for a missing or foreign file
    if config.training.mode == "finetune":
        raise ConfigError(f"{path}: loading supports frozen and partial models, not --mode "
                          "finetune")
    return ImageEmbedder(config, Embedder.of_model(config, model), path)


def _as_list(images: ImageLike | Iterable[ImageLike]) -> Sequence[ImageLike]:
    """One image or a sequence of them as a list (see the module docstring)."""
    if isinstance(images, (Image.Image, str, Path)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def _as_image(item: ImageLike, image_size: int) -> Image.Image:
    """An RGB PIL image of one image (a file decoded for a model of ``image_size``)."""
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise DataError(f"an image array must be (H, W, 3) uint8 RGB, not {item.dtype} of "
                            f"shape {item.shape}")
        return Image.fromarray(item)
    if isinstance(item, (str, Path)):
        try:
            data = Path(item).expanduser().read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read image {item}: {exc.strerror}") from None
        # decoded as `deephash search` decodes its query
        return decode_query(data, item, image_size, "pass an image file")
    raise DataError(f"cannot embed {type(item).__name__!r} items; give PIL images, (H, W, 3) "
                    "uint8 arrays or image paths")


__all__ = ["ImageEmbedder", "ImageLike", "load"]
