"""The data side of a training step: which real images, flipped or not, as a float batch.

The order is a pure function of (run seed, step): a permutation per epoch (drop-last), so a
resumed run sees the same batches, and so does a run on another number of processes (each rank
takes its slice of the same global batch).
"""

from __future__ import annotations

import numpy as np
import torch

from gantool.errors import OptionError
from gantool.models.layers import one_hot
from gantool.train import distributed
from gantool.train.hardware import Hardware


class EpochOrder:
    """Batch indices and flip masks as a pure function of (seed, step): drop-last epochs."""

    def __init__(self, n: int, batch_size: int, seed: int, flip: bool):
        if n < batch_size:
            raise OptionError("batch_size", f"the dataset has {n} images, fewer than the batch "
                              f"size {batch_size}; lower it or add images")
        self.n, self.batch_size, self.seed, self.flip = n, batch_size, seed, flip
        self.steps_per_epoch = n // batch_size
        self._epoch, self._perm, self._flips = -1, None, None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._flips = torch.rand(self.n, generator=g) < 0.5 if self.flip else None
            self._epoch = epoch
        idx = self._perm[i * self.batch_size : (i + 1) * self.batch_size]
        return idx, (self._flips[idx] if self._flips is not None else None)


class RealBatches:
    """``batches(step)``: this rank's slice of the global batch of ``step`` (all of it in one
    process), in [-1, 1] on the training device."""

    def __init__(self, images: np.ndarray, order: EpochOrder, world: distributed.World,
                 hw: Hardware, labels: np.ndarray | None = None, classes: int = 0):
        self.order, self.world, self.hw = order, world, hw
        self.images = place(torch.from_numpy(images), hw.device)  # (N, C, R, R) uint8
        self.onehot = (one_hot(torch.from_numpy(labels), classes).to(hw.device)
                       if labels is not None else None)  # (N, classes)

    def _indices(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx, flips = self.order.batch(step)
        if self.world.enabled:
            lo = self.world.rank * self.hw.local_batch
            part = slice(lo, lo + self.hw.local_batch)
            idx, flips = idx[part], (flips[part] if flips is not None else None)
        return idx, flips

    def classes(self, step: int) -> torch.Tensor | None:
        """The one-hot classes of ``__call__(step)``'s images; None for unlabelled data."""
        if self.onehot is None:
            return None
        return self.onehot[self._indices(step)[0].to(self.onehot.device)]

    def __call__(self, step: int) -> torch.Tensor:
        idx, flips = self._indices(step)
        x = self.images[idx.to(self.images.device)]  # (B, C, R, R) uint8
        if flips is not None:
            x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)
        x = x.to(self.hw.device, non_blocking=True).float().mul_(1 / 127.5).sub_(1.0)
        return x.contiguous(memory_format=torch.channels_last) if self.hw.channels_last else x


def place(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Where the decoded dataset lives: on the GPU when it takes at most a quarter of the GPU's
    memory (2,000 images at 1024 px take 6.3 GB), so batches are gathered there with no
    host-to-device copy per step; else in host memory (the numpy array's own)."""
    if device.type == "cuda" and (
            images.nbytes <= torch.cuda.get_device_properties(device).total_memory / 4):
        return images.to(device)
    return images
