"""HashNet: Cao, Long, Wang & Yu, "HashNet: Deep Learning to Hash by Continuation",
ICCV 2017."""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F

from deephash.errors import ConfigError
from deephash.losses.options import LossOption
from deephash.losses.pairwise import PairwiseLoss

#: α K, the adaptive sigmoid's α times the code length: α = 10 / K (the authors' code)
HASHNET_ALPHA_BITS = 10.0
#: the continuation β_t = (1 + γ t)^p, updated every ``step_size`` steps (the authors' code)
HASHNET_GAMMA = 0.005
HASHNET_POWER = 0.5
HASHNET_STEP_SIZE = 200


class HashNetLoss(PairwiseLoss):
    """The weighted pairwise likelihood of codes relaxed by continuation:

        L = Σ_(i,j) w_ij (log(1 + exp(α ⟨h_i, h_j⟩)) - α s_ij ⟨h_i, h_j⟩),
        h_i = tanh(β z_i),
        w_ij = |P| / |P₁| if s_ij = 1, |P| / |P₀| if s_ij = 0,

    over the batch's ordered pairs ``P`` (``P₁`` the similar ones, ``P₀`` the others: the
    class-imbalance weights; c_ij = 1, hard similarity, as both reference implementations),
    divided by ``|P|``: the mean loss
    of the similar pairs plus that of the dissimilar ones. ``z`` are the head's linear
    outputs ``(B, K)`` (``--activation none``; their signs are the codes, the same as
    ``tanh(βz)``'s). The continuation raises β as training goes, so that ``tanh(βz)``
    approaches ``sign(z)``: β_t = (1 + γ t)^p in the ``t``-th training step, updated every
    ``step_size`` steps (γ 0.005, p 0.5, 200 steps and α = 10 / K, as the authors'
    released code, thuml/HashNet); ``t`` counts the losses computed with gradients and is
    saved with the loss (a buffer), so a resumed run continues it. ``log(1 + e^x)`` is
    ``softplus``, finite for any x. Main hyper-parameters: α (default ``10 / K``) and the β
    schedule (γ, p, step size): ``--loss-options alpha= gamma= p= step=``.
    """

    name = "hashnet"
    activations = ("none",)  # it applies tanh(βz) itself (the trait of main's BatchLoss)
    options = MappingProxyType({
        "alpha": LossOption("alpha", f"{HASHNET_ALPHA_BITS:g}/K", "the adaptive sigmoid's "
                            "scale of the inner products", open_low=True),
        "gamma": LossOption("gamma", HASHNET_GAMMA, "β_t = (1 + γ t)^p: the growth rate"),
        "p": LossOption("power", HASHNET_POWER, "β_t = (1 + γ t)^p: the power"),
        "step": LossOption("step_size", HASHNET_STEP_SIZE, "training steps between updates of "
                           "β", low=1, integer=True)})

    def __init__(self, alpha: float, gamma: float = HASHNET_GAMMA, power: float = HASHNET_POWER,
                 step_size: int = HASHNET_STEP_SIZE) -> None:
        super().__init__()
        if not alpha > 0 or not gamma >= 0 or not power >= 0 or step_size < 1:
            raise ConfigError(f"HashNet needs α > 0, γ >= 0, p >= 0 and a step size >= 1, got "
                              f"α {alpha:g}, γ {gamma:g}, p {power:g}, step size {step_size}")
        self.alpha, self.gamma, self.power = float(alpha), float(gamma), float(power)
        self.step_size = int(step_size)
        self.steps: torch.Tensor
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @property
    def beta(self) -> float:
        """The continuation's scale after ``steps`` training steps."""
        t = int(self.steps) // self.step_size * self.step_size
        return float((1 + self.gamma * t) ** self.power)

    def transform(self, outputs: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and outputs.requires_grad:  # a training step: count it
            self.steps.add_(1)
        return torch.tanh(self.beta * outputs)

    def pair_losses(self, codes: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
        dot = self.alpha * codes @ codes.T
        return F.softplus(dot) - similar * dot

    def pair_weights(self, similar: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        n_pairs = pairs.sum().double()  # exact ratios; the base casts to the codes' dtype
        positive, negative = similar & pairs, ~similar & pairs
        return (positive * (n_pairs / positive.sum().clamp_min(1))
                + negative * (n_pairs / negative.sum().clamp_min(1)))

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha:g}, gamma={self.gamma:g}, power={self.power:g}, "
                f"step_size={self.step_size}")
