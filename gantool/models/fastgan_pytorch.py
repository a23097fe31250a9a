"""The generator of FastGAN-pytorch (Liu et al., "Towards Faster and Stabilized GAN Training for
High-fidelity Few-shot Image Synthesis", ICLR 2021; the authors' code), for drawing from
imported checkpoints (``gantool import``). gantool's own few-shot generator is
``gantool.models.fastgan``; this one has the authors' layout, so their weights load as they are.

z (B, nz) -> 4x4 (transposed convolution, BatchNorm, GLU) -> doublings to 8, 16, ... px, each
a nearest-neighbour upsampling and one 3x3 convolution with BatchNorm and GLU, or (at 8, 32,
128 and 512 px) two, each followed by noise; skip-layer excitation multiplies 64, 128, 256 and
512 px by gates computed from 4, 8, 16 and 32 px; a 3x3 convolution to the image, through tanh
at 1024 px only (the authors' code returns 256 and 512 px images without it, and clamps when
saving). Spectral normalisation is applied at import (the weights stored are the normalised
ones) and the noise drawn on every call is one fixed map per noise layer, stored.

Hyper-parameters (``ModelConfig.arch_params``): ``widths``, resolution -> channels, for 4 px up
to the image's resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TWO_CONVS = (8, 32, 128, 512)  # the resolutions of the authors' UpBlockComp
GATES = {64: 4, 128: 8, 256: 16, 512: 32}  # gated resolution: the resolution gating it


class Up(nn.Module):
    def __init__(self, chan_in: int, chan_out: int, resolution: int):
        super().__init__()
        convs = 2 if resolution in TWO_CONVS else 1
        self.convs = nn.ModuleList(nn.Conv2d(chan_in if i == 0 else chan_out, chan_out * 2, 3,
                                             padding=1, bias=False) for i in range(convs))
        self.norms = nn.ModuleList(nn.BatchNorm2d(chan_out * 2) for _ in range(convs))
        for i in range(convs if convs == 2 else 0):  # a fixed noise map times its strength
            self.register_buffer(f"noise{i}", torch.zeros(1, 1, resolution, resolution))

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x)
            if len(self.convs) == 2:
                x = x + getattr(self, f"noise{i}")
            x = F.glu(norm(x), dim=1)
        return x


class Gate(nn.Module):
    """Skip-layer excitation: channel gates for a big map from a small one."""

    def __init__(self, chan_small: int, chan_big: int):
        super().__init__()
        self.conv1 = nn.Conv2d(chan_small, chan_big, 4, bias=False)
        self.conv2 = nn.Conv2d(chan_big, chan_big, 1, bias=False)

    def forward(self, small, big):
        x = self.conv1(F.adaptive_avg_pool2d(small, 4))
        return big * torch.sigmoid(self.conv2(x * torch.sigmoid(x)))


class FastGANPytorchGenerator(nn.Module):
    """z (B, nz) -> image (B, C, R, R), about [-1, 1]."""

    def __init__(self, resolution: int, channels: int, nz: int, widths: dict):
        super().__init__()
        self.classes, self.resolution = 0, resolution
        w = {int(r): int(c) for r, c in widths.items()}
        self.initial = nn.ConvTranspose2d(nz, w[4] * 2, 4, bias=False)
        self.initial_norm = nn.BatchNorm2d(w[4] * 2)
        self.sizes = [2**i for i in range(3, resolution.bit_length())]
        self.ups = nn.ModuleDict({str(r): Up(w[r // 2], w[r], r) for r in self.sizes})
        self.gates = nn.ModuleDict({str(r): Gate(w[s], w[r]) for r, s in GATES.items()
                                    if r <= min(resolution, 512)})
        self.to_image = nn.Conv2d(w[resolution], channels, 3, padding=1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.initial_norm(self.initial(z[:, :, None, None])), dim=1)
        feats = {4: x}
        for r in self.sizes:
            x = self.ups[str(r)](x)
            if str(r) in self.gates:
                x = self.gates[str(r)](feats[GATES[r]], x)
            feats[r] = x
        x = self.to_image(x)
        return torch.tanh(x) if self.resolution == 1024 else x
