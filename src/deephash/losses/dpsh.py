"""DPSH: Li, Wang & Kang, "Feature Learning based Deep Supervised Hashing with Pairwise
Labels", IJCAI 2016."""

from __future__ import annotations

from types import MappingProxyType

import torch
import torch.nn.functional as F

from deephash.errors import ConfigError
from deephash.hashing.regularizers import quantization
from deephash.losses.options import LossOption
from deephash.losses.pairwise import PairwiseLoss

#: η, the weight of the quantisation term: the CIFAR-10 setting of the authors' group's
#: PyTorch code (jiangqy/DPSH-pytorch, λ = 10, both sums divided by the number of pairs)
DPSH_ETA = 10.0


class DPSHLoss(PairwiseLoss):
    """The negative log-likelihood of the pairwise labels plus the quantisation term:

        J = -Σ_(i,j) (s_ij Θ_ij - log(1 + e^Θ_ij)) + η Σ_i ||b_i - u_i||²,
        Θ_ij = ½ u_iᵀ u_j,  b_i = sign(u_i),

    over the batch's ordered pairs ``(i, j)``, ``i != j``, divided by their number ``|P|``
    (so that the learning rate means the same at any batch size; η keeps the paper's
    ratio of the two sums, as jiangqy/DPSH-pytorch, which pairs the batch with the whole
    training set, does). ``u`` are the head's linear outputs ``(B, K)`` (no tanh, as in
    the paper). ``log(1 + e^Θ)`` is ``softplus``, finite for any Θ. The quantisation
    term is :func:`deephash.hashing.regularizers.quantization` (its mean over the batch,
    times ``B``). Main hyper-parameter: η (default :data:`DPSH_ETA`;
    ``--loss-options eta=VALUE``).
    """

    name = "dpsh"
    options = MappingProxyType({
        "eta": LossOption("eta", DPSH_ETA, "weight of the quantisation term")})

    def __init__(self, eta: float = DPSH_ETA) -> None:
        super().__init__()
        if not eta >= 0:
            raise ConfigError(f"DPSH's η must be a number >= 0, got {eta:g}")
        self.eta = float(eta)

    def pair_losses(self, codes: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
        theta = 0.5 * codes @ codes.T
        return F.softplus(theta) - similar * theta

    def codes_term(self, codes: torch.Tensor, n_pairs: int) -> torch.Tensor:
        return self.eta * len(codes) * quantization(codes) / n_pairs

    def extra_repr(self) -> str:
        return f"eta={self.eta:g}"
