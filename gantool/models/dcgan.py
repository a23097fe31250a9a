"""DCGAN generator and discriminator (Radford et al. 2016) for any supported square resolution.

At 64 px with ngf = ndf = 64 these are layer for layer the networks of pytorch/examples' DCGAN,
except that the discriminator returns a logit (the sigmoid lives in the loss).
"""

from __future__ import annotations

import torch
from torch import nn

from gantool.models.layers import (
    ClassSequential,
    Projection,
    batch_norm,
    dcgan_init,
    feature_widths,
    resolution_plan,
)


class MinibatchStdDev(nn.Module):
    """Append the batch's mean feature standard deviation as one constant channel (Karras et
    al. 2018): D sees how varied a batch is, which penalises collapse onto few modes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(x.float().var(dim=0, unbiased=False) + 1e-8).mean()  # scalar
        return torch.cat([x, std.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class DCGANGenerator(nn.Module):
    """z (B, nz) -> image (B, C, R, R) in [-1, 1]: transposed convs, BatchNorm, ReLU, tanh.
    With ``classes``, the BatchNorms are class-conditional and ``c`` (B, classes) is an input."""

    def __init__(self, resolution: int, channels: int = 3, nz: int = 100, ngf: int = 64,
                 max_channels: int = 512, classes: int = 0):
        super().__init__()
        base, _ = resolution_plan(resolution)
        widths = feature_widths(resolution, ngf, max_channels)  # at base, 2*base, ...
        self.nz, self.classes = nz, classes
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, widths[0], base, 1, 0, bias=False),  # (B, w0, base, base)
            batch_norm(widths[0], classes),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),  # doubles H, W
                       batch_norm(c_out, classes), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = ClassSequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.nz, 1, 1), c)  # (B, C, R, R)


class DCGANDiscriminator(nn.Module):
    """image (B, C, R, R) -> logit (B,): strided convs, BatchNorm, LeakyReLU 0.2, dropout option.

    ``head_dropout``: one more dropout right before the logit layer (Sharma et al. used 0.3 in
    the body and 0.4 there).
    ``pooled``: Xin's modified discriminator: the last conv/BN/LeakyReLU layer applied once more
    (3x3, stride 1), then a 1x1 conv to one channel, averaged over space, instead of DCGAN's
    base x base conv.
    """

    def __init__(self, resolution: int, channels: int = 3, ndf: int = 64, max_channels: int = 512,
                 dropout: float = 0.0, mbstd: bool = False, spectral_norm: bool = False,
                 pooled: bool = False, head_dropout: float = 0.0, classes: int = 0):
        super().__init__()
        base, _ = resolution_plan(resolution)
        widths = feature_widths(resolution, ndf, max_channels)[::-1]  # at R/2, R/4, ..., base

        def act() -> list[nn.Module]:
            return [nn.LeakyReLU(0.2, True)] + ([nn.Dropout(dropout)] if dropout else [])

        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), *act()]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), *act()]
        w = widths[-1]
        if pooled:
            layers += [nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), *act()]
        if head_dropout:
            layers += [nn.Dropout(head_dropout)]  # right before the logit layer
        if mbstd:
            layers += [MinibatchStdDev()]  # (B, w + 1, base, base)
        head = 1 if pooled else base  # (B, 1, base, base) pooled, else (B, 1, 1, 1)
        layers += [nn.Conv2d(w + mbstd, 1, head, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        self.project = Projection(w + mbstd, classes) if classes else None
        dcgan_init(self)
        if spectral_norm:
            for i, m in enumerate(self.main):
                if isinstance(m, nn.Conv2d):
                    self.main[i] = nn.utils.parametrizations.spectral_norm(m)
            if self.project is not None:
                self.project.spectral_norm()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, classify: bool = False):
        """Logits (B,); with ``classify`` (a conditional D), also the class scores (B, K)."""
        if self.project is None:
            return self.main(x).mean(dim=(2, 3)).flatten()  # (B,)
        h = self.main[:-1](x)  # (B, w, base, base)
        term, scores = self.project(h, c)
        logits = self.main[-1](h).mean(dim=(2, 3)).flatten() + term
        return (logits, scores) if classify else logits

