"""Shallow hashing: a linear coder fitted on frozen features, ``sign((x - mean) W)``.

The field's unsupervised baselines: nothing is trained by gradient descent and no label is
read; the coder is fitted on the frozen features of the training split in seconds on the
CPU and then codes any image. Both coders have the scikit-learn shape: :meth:`fit` returns
the coder, the fitted state ends in ``_`` (``mean_`` ``(D,)``, ``projection_`` ``(D, K)``),
:meth:`~LinearCoder.transform` gives the relaxed codes ``(N, K)`` (the outputs before the
sign, which order Hamming ties where results are shown) and :meth:`~LinearCoder.encode`
their signs, ``(N, K)`` int8 in {-1, +1} with sign(0) = +1
(:func:`~deephash.hashing.codes.binarize`).

* :class:`LSH`, sign random projections (Charikar, "Similarity estimation techniques from
  rounding algorithms", STOC 2002; locality-sensitive hashing: Gionis, Indyk & Motwani,
  VLDB 1999): each bit is the side of a random Gaussian hyperplane, so two vectors at angle
  θ share a bit with probability 1 - θ/π. Through the features' mean by default, as
  Gong & Lazebnik compare it (``centre=False``: Charikar's hyperplanes through the origin).
* :class:`ITQ`, iterative quantisation (Gong & Lazebnik, "Iterative Quantization: A
  Procrustean Approach to Learning Binary Codes", CVPR 2011): the zero-centred features
  projected on their top-K principal directions, ``V`` ``(N, K)``, then rotated by the
  orthogonal ``R`` ``(K, K)`` that minimises the quantisation loss ``||B - V R||²`` over
  codes ``B`` and rotations, alternately: ``B = sign(V R)``, then ``R`` from the SVD of
  ``Bᵀ V`` (the orthogonal Procrustes problem), 50 iterations from a seeded random
  orthogonal ``R``.

In ``deephash hash --method itq|lsh`` (and ``train --procedure itq|lsh --codes``) a coder
stands where training would be: :mod:`deephash.studies.shallow`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from deephash.errors import ConfigError
from deephash.hashing.codes import binarize
from deephash.registries import PROCEDURES


class LinearCoder:
    """``x`` ``(N, D)`` -> ``sign((x - mean_) @ projection_)`` ``(N, K)``; subclasses fit
    ``projection_`` (:meth:`_fit_projection`) on the centred training features."""

    #: the coder's name in ``PROCEDURES`` (``--procedure``, ``hash --method``)
    name: ClassVar[str]
    #: whether the coder starts from a PCA, which keeps at most D directions of D-dimensional
    #: features and N of N training images (random projections have no such bound)
    uses_pca: ClassVar[bool] = False

    def __init__(self, bits: int, seed: int = 0) -> None:
        if bits < 1:
            raise ValueError(f"a code needs at least one bit, got {bits}")
        self.bits, self.seed = bits, seed

    @classmethod
    def check(cls, bits: int, n_features: int | None = None, n_train: int | None = None
              ) -> None:
        """Refuse (``ConfigError``, one line) a code length this coder cannot fit on
        ``n_train`` training images of ``n_features`` dimensions (``None``: not checked)."""
        if not cls.uses_pca:
            return
        if n_features is not None and bits > n_features:
            raise ConfigError(f"{cls.name}: {bits} bits exceed the {n_features} feature "
                              f"dimensions its PCA can keep; give --bits {n_features} or fewer")
        if n_train is not None and bits > n_train:
            raise ConfigError(f"{cls.name}: {bits} bits need at least {bits} training images "
                              f"for its PCA, the training split has {n_train}; give --bits "
                              f"{n_train} or fewer, or more training images")

    def fit(self, x: np.ndarray) -> LinearCoder:
        """Fit on ``(N, D)`` training features (float, memory-mapped ones too: they are
        read a block of rows at a time, in float64; labels are not used)."""
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"fit needs (N, D) features with N >= 1, got shape {x.shape}")
        self.check(self.bits, x.shape[1], len(x))
        self.mean_ = self._centre(x)
        self.projection_ = self._fit_projection(x, self.mean_)
        return self

    def _centre(self, x: np.ndarray) -> np.ndarray:
        return x.mean(axis=0, dtype=np.float64)

    def _fit_projection(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """``(N, D)`` features and their ``(D,)`` centre -> the ``(D, K)`` projection."""
        raise NotImplementedError

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(N, D)`` features -> ``(N, K)`` float32 relaxed codes."""
        return project(x, self.mean_, self.projection_).astype(np.float32)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """``(N, D)`` features -> ``(N, K)`` int8 codes in {-1, +1}."""
        return binarize(self.transform(x))


#: rows of features centred at once (float64: 8192 x 1280 is 84 MB)
ROWS_AT_ONCE = 8192


def _centred_blocks(x: np.ndarray, mean: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(x), ROWS_AT_ONCE):
        yield np.asarray(x[start:start + ROWS_AT_ONCE], dtype=np.float64) - mean


def project(x: np.ndarray, mean: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """``(x - mean) @ projection``, ``(N, K)`` float64, a block of rows at a time."""
    blocks = [block @ projection for block in _centred_blocks(x, mean)]
    return np.concatenate(blocks) if blocks else np.zeros((0, projection.shape[1]))


def covariance(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The ``(D, D)`` covariance of ``(N, D)`` features about ``mean`` (divided by N)."""
    total = np.zeros((x.shape[1], x.shape[1]))
    for block in _centred_blocks(x, mean):
        total += block.T @ block
    return total / len(x)


class LSH(LinearCoder):
    """Sign random projections: ``projection_`` ``(D, K)`` i.i.d. standard normal (seeded)."""

    name = "lsh"

    def __init__(self, bits: int, seed: int = 0, centre: bool = True) -> None:
        super().__init__(bits, seed)
        self.centre = centre

    def _centre(self, x: np.ndarray) -> np.ndarray:
        return super()._centre(x) if self.centre else np.zeros(x.shape[1])

    def _fit_projection(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return np.random.default_rng(self.seed).standard_normal((x.shape[1], self.bits))


def principal_directions(cov: np.ndarray, k: int) -> np.ndarray:
    """The top-``k`` principal directions ``(D, k)`` of a ``(D, D)`` covariance, by
    decreasing variance, each signed so that its largest-magnitude entry is positive
    (eigenvectors have no sign of their own; this makes the choice reproducible)."""
    _values, vectors = np.linalg.eigh(cov)  # ascending
    top = vectors[:, ::-1][:, :k]
    signs = np.sign(top[np.abs(top).argmax(axis=0), np.arange(k)])
    return top * np.where(signs == 0, 1.0, signs)


def random_rotation(k: int, seed: int) -> np.ndarray:
    """A seeded random ``(k, k)`` orthogonal matrix: the left singular vectors of a
    standard normal matrix (ITQ's initialisation)."""
    return np.linalg.svd(np.random.default_rng(seed).standard_normal((k, k)))[0]


class ITQ(LinearCoder):
    """Iterative quantisation: ``projection_ = W R``, ``W`` ``(D, K)`` the principal
    directions, ``R`` ``(K, K)`` the learned rotation (``rotation_``);
    ``quantization_loss_`` ``(iterations + 1,)`` is ``||B - V R||²`` at the start and
    after each iteration (it never rises)."""

    name = "itq"
    uses_pca = True

    def __init__(self, bits: int, seed: int = 0, iterations: int = 50) -> None:
        super().__init__(bits, seed)
        self.iterations = iterations

    def _fit_projection(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        pca = principal_directions(covariance(x, mean), self.bits)
        v = project(x, mean, pca)  # (N, K)
        rotation = random_rotation(self.bits, self.seed)
        losses = [_quantization_loss(v, rotation)]
        for _ in range(self.iterations):
            codes = binarize(v @ rotation).astype(np.float64)  # B = sign(V R)
            u, _s, vt = np.linalg.svd(codes.T @ v)  # Bᵀ V = U S Vᵀ
            rotation = vt.T @ u.T  # argmin over orthogonal R of ||B - V R||
            losses.append(_quantization_loss(v, rotation))
        self.rotation_ = rotation
        self.quantization_loss_ = np.array(losses)
        return pca @ rotation


def _quantization_loss(v: np.ndarray, rotation: np.ndarray) -> float:
    """``||sign(V R) - V R||²``: the loss of the best codes for ``rotation``."""
    projected = v @ rotation
    return float(((binarize(projected) - projected) ** 2).sum())


def shallow_coder(procedure: str) -> type[LinearCoder] | None:
    """The coder class of a ``--procedure`` that fits a linear coder (``itq``, ``lsh``),
    else ``None`` (a procedure that trains)."""
    factory = PROCEDURES.get(procedure)
    return factory if isinstance(factory, type) and issubclass(factory, LinearCoder) else None
