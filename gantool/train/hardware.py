"""Where and how a run computes: device, process, autocast dtype and memory layout, with the
checks that refuse combinations which cannot work (one line each, before any file is made)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gantool.config import TrainConfig
from gantool.device import pick_device
from gantool.errors import GantoolError
from gantool.train import distributed


@dataclass(frozen=True)
class Hardware:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast's dtype; None: full precision
    channels_last: bool
    local_batch: int  # this process's share of train.batch_size

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def setup_hardware(t: TrainConfig, world: distributed.World) -> Hardware:
    """Pick the device (this process's GPU under torchrun) and precision; join the process
    group of a distributed run."""
    local_batch = distributed.check_batch(t.batch_size, world)
    device = pick_device(t.device)
    if device.type == "cuda" and world.enabled:
        if world.local_rank >= torch.cuda.device_count():
            raise GantoolError(
                f"torchrun started process {world.local_rank + 1} on this node but only "
                f"{torch.cuda.device_count()} GPU(s) are visible: one process per GPU, so "
                "pass torchrun's --nproc_per_node at most that (or train on the cpu device)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if t.sync_bn and (not world.enabled or device.type != "cuda"):
        raise GantoolError("train.sync_bn needs several GPU processes (torchrun "
                           "--nproc_per_node N on CUDA); plain BatchNorm is used otherwise")
    distributed.init(world, device)
    amp_dtype = pick_amp(t.amp, device)
    if t.cuda_graphs and (device.type != "cuda" or world.enabled or amp_dtype == torch.float16):
        raise GantoolError("train.cuda_graphs needs one process on a CUDA GPU and no fp16 "
                           "autocast (bf16 or off); found "
                           f"{device.type}, {world.size} process(es), amp {t.amp}")
    # channels_last by default on CUDA, but not under torch.compile, which picks its own
    # layouts (and whose convolution backward can refuse channels_last weights)
    channels_last = (device.type == "cuda" and not t.compile
                     if t.channels_last is None else t.channels_last)
    return Hardware(device, amp_dtype, channels_last, local_batch)


def pick_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: auto = bf16 on GPUs that have it, fp16 on older GPUs, off on CPU."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16
