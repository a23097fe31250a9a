"""Xin's improved DCGAN generator: a residual z -> image network.

Generator (Xin, "Fast and High-resolution Image Generation Based on Improved DCGAN", 2.3.3):
a downsampling stage of 5 conv/BatchNorm/ReLU layers, 9 residual blocks (conv, BN, ReLU, conv,
BN) in which every block after the first also receives the first block's output, and an
upsampling stage of transposed conv/BN/ReLU layers ending in tanh.

How z enters (the paper leaves it open): z (B, nz) is projected by a linear layer to a
(B, w, 4*base, 4*base) map, where the resolution is base * 2**k. The 5 downsampling layers keep
that size for 3 layers (3x3, stride 1) and halve it twice (4x4, stride 2) to base x base; the
residual blocks work at base x base; the upsampling stage doubles k times to full size. At the
paper's 96 px (base 3, k = 5) that is exactly its 5 upsampling layers, 3x3 -> 96x96. Widths
follow the DCGAN plan (``feature_widths``), so ngf and max_channels mean the same thing in both,
except that the downsampling stage and the blocks are capped at 4*ngf channels (the width of the
9 blocks in Johnson et al.'s image-transformation network, which this design echoes): at 64 px
uncapped 512-wide blocks would make G 14x larger than the DCGAN one for no measured gain.

Xin's modified discriminator is ``DCGANDiscriminator(pooled=True)`` in ``dcgan.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from gantool.models.layers import (
    ClassSequential,
    batch_norm,
    dcgan_init,
    feature_widths,
    resolution_plan,
)

DOWN_LAYERS = 5
HALVINGS = 2  # of the 5 downsampling layers, this many halve the map: 4*base -> base
RES_WIDTH = 4  # residual blocks are at most 4*ngf wide (as in Johnson et al.'s 9-block net)


class ResidualBlock(nn.Module):
    """x + BN(conv(ReLU(BN(conv(x))))), 3x3 convs at constant width."""

    def __init__(self, width: int, classes: int = 0):
        super().__init__()
        self.body = ClassSequential(
            nn.Conv2d(width, width, 3, 1, 1, bias=False), batch_norm(width, classes),
            nn.ReLU(True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), batch_norm(width, classes),
        )

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.body(x, c)


class ResidualGenerator(nn.Module):
    """z (B, nz) -> image (B, C, R, R) in [-1, 1]: projection, 5 down layers, residual blocks
    that each also see the first block's output, k up layers, tanh."""

    def __init__(self, resolution: int, channels: int = 3, nz: int = 100, ngf: int = 64,
                 max_channels: int = 512, blocks: int = 9, classes: int = 0):
        super().__init__()
        base, k = resolution_plan(resolution)  # k >= 2, so 4*base <= resolution
        widths = feature_widths(resolution, ngf, max_channels)  # at base, 2*base, ..., R/2
        res = [min(w, RES_WIDTH * ngf) for w in widths]  # down stage and blocks: <= 4*ngf
        self.nz, self.start, self.classes = nz, base * 2**HALVINGS, classes
        self.w_in = res[min(HALVINGS, k - 1)]  # the DCGAN width at 4*base (R/2 when k = 2)
        self.project = nn.Linear(nz, self.w_in * self.start**2, bias=False)
        self.project_norm = ClassSequential(batch_norm(self.w_in, classes), nn.ReLU(True))
        keep = DOWN_LAYERS - HALVINGS
        outs = [self.w_in] * keep + res[HALVINGS - 1 :: -1]  # ..., at 2*base, at base
        down: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([self.w_in, *outs], outs)):
            conv = (nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False) if i < keep
                    else nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False))  # halves H, W
            down += [conv, batch_norm(c_out, classes), nn.ReLU(True)]
        self.down = ClassSequential(*down)  # (B, res[0], base, base)
        self.blocks = nn.ModuleList(ResidualBlock(res[0], classes) for _ in range(blocks))
        up: list[nn.Module] = []
        for c_in, c_out in zip([res[0], *widths[1:]], widths[1:]):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                   batch_norm(c_out, classes), nn.ReLU(True)]
        up += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.up = ClassSequential(*up)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.project(z.view(z.shape[0], self.nz))
        x = self.project_norm(x.view(z.shape[0], self.w_in, self.start, self.start), c)
        x = self.down(x, c)  # (B, w, base, base)
        first = x = self.blocks[0](x, c)
        for block in self.blocks[1:]:
            x = block(x + first, c)
        return self.up(x, c)  # (B, C, R, R)
