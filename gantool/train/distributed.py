"""Data-parallel training over torch.distributed, on processes started by ``torchrun``.

One process per GPU (or several CPU processes with gloo), on one node or several. The global
batch (``train.batch_size``) is split across ranks: each step every rank takes its own slice of
the same global batch, so the data order depends on the run's seed alone, never on the number
of processes, and a run resumes with a different number of them.

gantool averages gradients itself rather than wrapping G and D in DistributedDataParallel: a
GAN step runs D twice before one backward, backpropagates through D without D's weight
gradients in the G update, and differentiates twice for the WGAN-GP penalty, none of which
DDP's reducer supports. Each optimizer step all-reduces one flattened gradient buffer, and rank
0's BatchNorm buffers are broadcast after every step (as DDP's ``broadcast_buffers`` does), so
every rank holds the same G, D, G_ema and optimizer states; each checkpoint verifies that.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from gantool.errors import GantoolError


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> World:
    """The world torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (none: one process)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU) unless already in one."""
    if world.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(world: World) -> None:
    if world.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(module: nn.Module, world: World) -> None:
    """Replace every gradient of ``module`` by its mean over the ranks (one all_reduce)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not world.enabled or not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat.div_(world.size)
    for g, mean in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(mean)


def broadcast(tensors, world: World) -> None:
    """Rank 0's values of ``tensors`` on every rank (one broadcast per dtype)."""
    if not world.enabled:
        return
    tensors = list(tensors)
    for _, group in itertools.groupby(sorted(tensors, key=lambda t: str(t.dtype)),
                                      key=lambda t: t.dtype):
        group = list(group)
        flat = _flatten_dense_tensors([t.data for t in group])
        dist.broadcast(flat, 0)
        for t, value in zip(group, _unflatten_dense_tensors(flat, group)):
            t.data.copy_(value)


def broadcast_module(module: nn.Module, world: World, buffers_only: bool = False) -> None:
    params = [] if buffers_only else list(module.parameters())
    broadcast([*params, *module.buffers()], world)


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. one rank got Ctrl-C)."""
    if not world.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(values: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """Per-key means over the ranks of scalar tensors (the logged losses and D outputs)."""
    if not world.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.stack([values[k].float().reshape(()) for k in keys])
    dist.all_reduce(t)
    return dict(zip(keys, t / world.size))


def gather(obj, world: World) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not world.enabled:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, world: World):
    """Rank 0's ``obj`` on every rank."""
    if not world.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def fingerprint(*modules: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``modules`` (to check replicas are equal)."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in m.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_batch(batch_size: int, world: World) -> int:
    """Images per rank per step; the global batch must split evenly."""
    if batch_size % world.size:
        raise GantoolError(f"train.batch_size {batch_size} does not split over {world.size} "
                           f"processes; use a multiple of {world.size}")
    return batch_size // world.size
