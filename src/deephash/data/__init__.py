"""Data sets (image folders, the official CIFAR-10 release), protocols and transforms."""

from deephash.data.dataset import ImageDataset
from deephash.data.open import open_dataset
from deephash.data.protocols import PROTOCOLS, Splits, make_splits

__all__ = ["PROTOCOLS", "ImageDataset", "Splits", "make_splits", "open_dataset"]
