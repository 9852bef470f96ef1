"""Training and extraction on several processes, as ``torchrun`` starts them (DDP).

``torchrun --nproc-per-node N --no-python deephash train ...`` (or ``hash``, ``index``,
``baseline``: the last two share only their feature extraction) runs N copies of the
command; :func:`init_from_environment` joins them into one process group (NCCL on
CUDA, one GPU per process; gloo on the CPU). What the copies share:

- **Batches.** Every rank draws the same global P x K batch from the same seeded sampler;
  rank ``r`` embeds the rows ``r, r + W, r + 2W, ...`` (:meth:`Ranks.take`: disjoint, and
  balanced when K is a multiple of W). :func:`gather_batch` puts the W local embeddings
  back into the global batch's order on every rank, so the miner and the loss see the
  global batch, exactly as one process would. Labels are not gathered: every rank knows
  the global batch's pool indices, hence its labels.
- **Gradients.** Only the local rows of the gathered batch keep their gradient (the other
  ranks' rows arrive as values, as in pytorch-metric-learning's DistributedLossWrapper),
  scaled by W: every rank computes the same global loss, and DDP averages the W partial
  gradients, so the step equals one process's step on the global batch.
- **BatchNorm** of the embedding head normalises with the global batch's statistics
  (:class:`GlobalBatchNorm1d`; torch's SyncBatchNorm runs on GPUs only); the backbone's
  BatchNorm keeps its ImageNet statistics in every mode.
- **Writing.** Rank 0 alone writes run folders, checkpoints, metrics, reports and index
  folders; the feature cache's shards are split between the ranks in contiguous blocks
  (:meth:`Ranks.block`, :mod:`deephash.features.shards`), each rank writing its own, and
  rank 0 joins them (``index`` and ``baseline`` share only this extraction).
- **Threads.** On the CPU the N processes of a machine share its cores
  (:mod:`deephash.threads`, applied by :func:`init_from_environment`).

One process (no ``WORLD_SIZE`` above 1) is the W = 1 case of all of the above, with no
process group and no cost.
"""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from deephash.errors import ConfigError
from deephash.threads import apply_thread_rule

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how long a rank waits for the others at a collective (rank 0 alone evaluates on test)
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The process that writes (rank 0)."""
        return self.rank == 0

    def take(self, rows: T) -> T:
        """This rank's share of ``rows`` (an array or tensor): every W-th row from row
        ``rank``."""
        return rows if self.world == 1 else rows[self.rank::self.world]  # type: ignore[index]

    def owns(self, number: int) -> bool:
        """Whether this rank computes work item ``number`` (of a sequence split by turns)."""
        return number % self.world == self.rank

    def block(self, n: int) -> range:
        """This rank's contiguous share of ``n`` work items: the W blocks are in rank order
        and differ by at most one item (the first ``n mod W`` ranks take one more); ranks
        beyond ``n`` get an empty range."""
        size, extra = divmod(n, self.world)
        start = self.rank * size + min(self.rank, extra)
        return range(start, start + size + (self.rank < extra))


#: a process on its own
ONE_PROCESS = Ranks()


def ranks() -> Ranks:
    """The current process group's view (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return ONE_PROCESS


def environment_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when absent)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={value!r} is not a number; start deephash with "
                          "torchrun --nproc-per-node N --no-python deephash ...") from None


def init_from_environment(device: torch.device) -> torch.device:
    """Join torchrun's process group when it started several processes; returns the
    device this process trains on (``cuda:LOCAL_RANK`` on CUDA). A no-op for one process
    or when the group exists. Sets the process's torch threads
    (:func:`deephash.threads.apply_thread_rule`) in every case."""
    apply_thread_rule()
    if environment_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return _local_device(device)
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run one process")
    device = _local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT,
                            device_id=device if device.type == "cuda" else None)
    atexit.register(_leave)
    group = ranks()
    log.info("process %d of %d (%s, %s)", group.rank, group.world, backend, device)
    return device


def _local_device(device: torch.device) -> torch.device:
    if device.type != "cuda" or environment_world_size() <= 1:
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if local >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {local} but {torch.cuda.device_count()} GPUs are "
                          "visible; start at most one process per GPU")
    return torch.device("cuda", local)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if ranks().world > 1:
        dist.barrier()


def broadcast(value: T | None) -> T:
    """Rank 0's ``value`` (any picklable object; the other ranks pass ``None``) on every
    rank."""
    box = [value]
    if ranks().world > 1:
        dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        raise ValueError("rank 0 broadcast None")
    return box[0]


def gather_rows(local: np.ndarray, n_rows: int) -> np.ndarray:
    """Undo :meth:`Ranks.take`: every rank's share of ``n_rows`` rows, back in order, on
    every rank. ``local`` is this rank's ``(ceil-or-floor(n_rows / W), ...)`` share."""
    group = ranks()
    if group.world == 1:
        return local
    parts: list[Any] = [None] * group.world
    dist.all_gather_object(parts, local)
    out = np.empty((n_rows, *local.shape[1:]), dtype=local.dtype)
    for rank, part in enumerate(parts):
        out[rank::group.world] = part
    return out


def gather_batch(local: torch.Tensor) -> torch.Tensor:
    """``(B / W, D)`` local embeddings -> ``(B, D)`` global batch, row ``j * W + r`` from
    rank ``r``'s row ``j`` (the order :meth:`Ranks.take` split it in). The local rows
    carry W times their gradient, the others none (see the module docstring)."""
    group = ranks()
    if group.world == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(group.world)]
    dist.all_gather(parts, local.detach().contiguous())
    # value ``local``, gradient W x: each rank's copy of the same loss reaches its own rows
    parts[group.rank] = local + (group.world - 1) * (local - local.detach())
    return torch.stack(parts, dim=1).reshape(-1, *local.shape[1:])


def check_batch(batch_size: int) -> None:
    """Refuse a global batch that the ranks cannot share evenly."""
    world = ranks().world
    if batch_size % world:
        raise ConfigError(f"a batch of {batch_size} images (--batch-classes x --batch-samples) "
                          f"cannot be shared by {world} processes; make it a multiple of "
                          f"{world}")


class _SumOverRanks(torch.autograd.Function):
    """``sum_r x_r`` on every rank; the gradient of each ``x_r`` is the sum of the ranks'
    gradients of the result (every rank's loss depends on every rank's ``x``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that, in training across ranks, normalises with the statistics of the
    global batch (mean, then biased variance, each one differentiable all-reduce), and
    updates its running statistics with them; a plain BatchNorm1d otherwise. Same
    parameters and buffers as BatchNorm1d, so checkpoints do not change."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or ranks().world == 1:
            return super().forward(x)
        all_reduce = _SumOverRanks.apply
        count = all_reduce(torch.tensor(float(x.shape[0]), device=x.device))
        mean = all_reduce(x.sum(dim=0)) / count
        variance = all_reduce(((x - mean) ** 2).sum(dim=0)) / count
        if self.track_running_stats and self.running_mean is not None \
                and self.running_var is not None:
            momentum = 0.1 if self.momentum is None else self.momentum
            with torch.no_grad():
                unbiased = variance * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked += 1
        y = (x - mean) * torch.rsqrt(variance + self.eps)
        return y * self.weight + self.bias if self.affine else y


def globalise_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm1d replaced (in place) by a :class:`GlobalBatchNorm1d`
    sharing its parameter and buffer objects, so an optimizer built before still updates
    them."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            replacement = GlobalBatchNorm1d(child.num_features, child.eps, child.momentum,
                                            child.affine, child.track_running_stats)
            for key, value in (*child._parameters.items(), *child._buffers.items()):
                setattr(replacement, key, value)
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            globalise_batch_norm(child)
    return module


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped for DDP training across the ranks (``model`` itself for one
    process); the head's BatchNorm becomes global first."""
    if ranks().world == 1:
        return model
    globalise_batch_norm(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)
