"""The hashing methods (``HASHING_METHODS`` in :mod:`deephash.registries`): each maps a
base :class:`~deephash.training.config.TrainingConfig` (``hash``'s, DTSH's defaults unless
the user changed them) to the method's own, its loss and head from its paper (the losses
and coders themselves live in :mod:`deephash.losses` and :mod:`deephash.hashing`).

Torch-free, below :mod:`deephash.validation` and the studies, which both read it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from deephash.training.config import TrainingConfig


def dtsh_training() -> TrainingConfig:
    """DTSH defaults: tanh codes, inner-product likelihood over all triplets, quantisation,
    and bit balance (ours: without it the codes collapse on small data, see
    :mod:`deephash.hashing.regularizers`)."""
    return TrainingConfig(loss="dtsh", miner="batch-all", distance="neg-half-inner",
                          reduction="mean", margin=8.0, activation="tanh", normalize=False,
                          regularizers=("quantization=0.1", "balance=0.1"), codes=True,
                          embedding_dim=48)


def dtsh_method(base: TrainingConfig) -> TrainingConfig:
    """DTSH (Wang, Shi & Kitani 2016) trains the hash head per batch with the configured
    loss and miner (:func:`dtsh_training` gives its defaults): ``base`` as it is."""
    return base


def zhuang_training(base: TrainingConfig) -> TrainingConfig:
    """Zhuang et al.: the head's logits are trained to predict inferred bits (no tanh, no
    quantisation term); ``margin`` is in bits and ``epochs`` counts stages."""
    return dataclasses.replace(base, procedure="zhuang", activation="none", regularizers=())


def class_code_training(base: TrainingConfig, loss: str, activation: str) -> TrainingConfig:
    """A method that learns codes against class targets: ``loss`` (its paper's defaults,
    its quantisation term inside it) on the head's ``activation``, not L2-normalised, no
    regulariser of ours; the rest of ``base`` (optimiser, epochs, P x K batches) as it is."""
    return dataclasses.replace(base, loss=loss, activation=activation, normalize=False,
                               regularizers=(), schedules=())


def csq_training(base: TrainingConfig) -> TrainingConfig:
    """CSQ (Yuan et al. 2020, :mod:`deephash.losses.csq`): tanh codes pulled to Hadamard
    hash centres, λ = 1e-4."""
    return class_code_training(base, "csq", "tanh")


def orthohash_training(base: TrainingConfig) -> TrainingConfig:
    """OrthoHash (Hoe et al. 2021, :mod:`deephash.losses.orthohash`): cosine logits of the
    head's outputs to class codes, s = 8, m = 0.2."""
    return class_code_training(base, "orthohash", "none")


def greedyhash_training(base: TrainingConfig) -> TrainingConfig:
    """GreedyHash (Su et al. 2018, :mod:`deephash.losses.greedyhash`): a classifier on
    straight-through sign codes of the head's outputs, α = 0.1."""
    return class_code_training(base, "greedyhash", "none")


def paper_defaults(base: TrainingConfig, own: dict[str, object],
                   defaults: dict[str, object]) -> TrainingConfig:
    """``base`` with a method's ``own`` settings (what makes it the method: its loss, its
    outputs) and its paper's ``defaults`` for the fields the user left at ``hash``'s
    defaults (:func:`dtsh_training`), so that ``--margin`` or ``--regularizers`` given on
    the command line still apply."""
    hash_defaults = dtsh_training()
    kept = {name: value for name, value in defaults.items()
            if getattr(base, name) == getattr(hash_defaults, name)}
    return dataclasses.replace(base, **own, **kept)  # type: ignore[arg-type]


#: the pairwise methods' head: the linear outputs are the relaxed codes (no tanh, no L2)
_LINEAR_CODES: dict[str, object] = {"activation": "none", "normalize": False}


def dpsh_method(base: TrainingConfig) -> TrainingConfig:
    """DPSH (Li, Wang & Kang 2016, :mod:`deephash.losses.dpsh`): the pairwise likelihood
    of all pairs of each batch on linear outputs, with its own quantisation term (η = 10);
    no other regulariser unless given."""
    return paper_defaults(base, {"loss": "dpsh", **_LINEAR_CODES}, {"regularizers": ()})


def hashnet_method(base: TrainingConfig) -> TrainingConfig:
    """HashNet (Cao et al. 2017, :mod:`deephash.losses.hashnet`): the class-weighted
    pairwise likelihood of tanh(βz), β raised by continuation (α = 10 / K); no
    regulariser unless given."""
    return paper_defaults(base, {"loss": "hashnet", **_LINEAR_CODES}, {"regularizers": ()})


def dsh_method(base: TrainingConfig) -> TrainingConfig:
    """DSH (Liu et al. 2016, :mod:`deephash.losses.dsh`): the contrastive loss of all
    pairs of each batch on linear outputs, margin m = 2K for K-bit codes (unless
    ``--margin`` is given), α = 0.01; no other regulariser unless given."""
    return paper_defaults(base, {"loss": "dsh", **_LINEAR_CODES},
                          {"regularizers": (), "margin": 2.0 * base.embedding_dim})


def shallow_method(procedure: str, base: TrainingConfig) -> TrainingConfig:
    """ITQ or LSH (:mod:`deephash.hashing.shallow`): ``base`` with the coder as its
    procedure, fitted on the frozen features of the training split instead of trained
    (the loss, miner, head and epochs of ``base`` are not used)."""
    return dataclasses.replace(base, procedure=procedure)


@dataclass(frozen=True)
class HyperGrid:
    """A method's main hyper-parameter and the small grid ``method-study`` selects it from
    on validation. ``name`` is a loss option (``--loss-options NAME=VALUE``) or ``margin``
    (the training field); ``None`` in ``values`` stands for the paper's value (the loss
    option's declared default, or the method's own margin), always the first point, so a
    tie keeps the paper's setting."""

    name: str
    values: tuple[float | None, ...]

    def settings(self, value: float | None) -> dict[str, Any]:
        """The training overlay of one grid point (``{}`` for the paper's value)."""
        if value is None:
            return {}
        return {"margin": value} if self.name == "margin" else \
            {"loss_options": (f"{self.name}={value:g}",)}

    def label(self, value: float | None) -> str:
        """``'lambda=0.001'``, or ``'paper'`` for the paper's value."""
        return "paper" if value is None else f"{self.name}={value:g}"


#: each method's main hyper-parameter and its grid (the paper's value first); a method
#: absent here (the shallow coders, Zhuang et al.) is run with its paper's settings only
METHOD_GRIDS: dict[str, HyperGrid] = {
    "dtsh": HyperGrid("margin", (None, 4.0, 16.0)),  # m = 8 (hash's default)
    "dpsh": HyperGrid("eta", (None, 1.0, 0.1)),  # η = 10
    "hashnet": HyperGrid("alpha", (None, 0.05, 0.5)),  # α = 10 / K
    "dsh": HyperGrid("alpha", (None, 0.1, 0.001)),  # α = 0.01
    "csq": HyperGrid("lambda", (None, 0.001, 0.01)),  # λ = 1e-4
    "orthohash": HyperGrid("m", (None, 0.1, 0.4)),  # m = 0.2
    "greedyhash": HyperGrid("alpha", (None, 0.01, 1.0)),  # α = 0.1
}


def classifier_training(base: TrainingConfig) -> TrainingConfig:
    """The yardstick of a method study: a softmax classifier on ``base``'s head and budget
    (epochs, batches, optimiser, hidden layers), its outputs read as class-probability codes
    (Sablayrolles et al. 2017) -- none of ``base``'s hashing settings (loss, miner,
    distance, activation, regularisers, schedules, loss options) carried over."""
    plain = TrainingConfig()
    return dataclasses.replace(
        base, loss="softmax", miner=plain.miner, distance=plain.distance,
        reduction=plain.reduction, margin=plain.margin, activation=plain.activation,
        normalize=plain.normalize, regularizers=(), schedules=(), loss_options=(),
        codes=False, embedding_dim=plain.embedding_dim, procedure=plain.procedure)
