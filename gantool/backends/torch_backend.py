"""PyTorch eager backend: a checkpoint's generator (EMA weights by default) in eval mode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gantool.device import pick_device
from gantool.sampling.images import to_uint8
from gantool.sampling.latent import latents
from gantool.train.checkpoint import load_generator


class TorchGenerator:
    def __init__(self, path: str, device: str = "auto", ema: bool = True,
                 prior: str | None = None):
        self.device = pick_device(device)
        self.net, cfg = load_generator(path, ema=ema, device=self.device)
        m = cfg.model
        self.resolution, self.channels, self.nz = m.resolution, m.channels, m.nz
        self.prior = prior or m.prior
        self.default_truncation = m.truncation

    @torch.no_grad()
    def generate(self, seeds: Sequence[int], truncation: float | None) -> np.ndarray:
        z = torch.from_numpy(latents(seeds, self.nz, self.prior, truncation)).to(self.device)
        return to_uint8(self.net(z).float().cpu().numpy())  # (B, H, W, C) uint8
