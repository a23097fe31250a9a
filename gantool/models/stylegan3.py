"""StyleGAN3's generator (Karras et al., "Alias-Free Generative Adversarial Networks", NeurIPS
2021), configs T and R, for drawing from imported weights (``gantool import``).

The mapping network is StyleGAN2's. Synthesis starts from Fourier features: a fixed set of
frequencies and phases, rotated and translated per image by an affine function of w, sampled on
a grid with a margin around the image, then mixed by a learned matrix. Each following layer is a
modulated convolution (unfused, as in ``stylegan2``) and a filtered leaky ReLU: bias, upsampling
by zeros and a low-pass filter, the non-linearity at the higher rate, then a low-pass filter and
downsampling, so the layer adds no aliasing. The last layer is a modulated 1x1 toRGB; the image
is scaled by ``output_scale``. There is no noise: an image is a function of (z, class, psi).

Every layer's geometry (channels, sizes, up and down factors, padding) and its filters are
taken from the imported weights, not redesigned here: ``arch_params["layers"]`` lists them and
the filters are buffers of the state. Config R differs from T only in its 1x1 convolutions and
radially symmetric down filters (2-D here rather than separable).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gantool.models.stylegan2 import Dense, DerivedOnLoad, Mapping


def upfirdn(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
            pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample ``x`` (B, C, H, W) by inserting zeros, pad (x before, x after, y before, y after;
    negative crops), filter each channel with ``f`` (taps, separable, or 2-D) times ``gain``,
    keep every ``down``-th sample."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [max(pad[0], 0), max(pad[1], 0), max(pad[2], 0), max(pad[3], 0)])
    x = x[:, :, max(-pad[2], 0) : x.shape[2] - max(-pad[3], 0),
          max(-pad[0], 0) : x.shape[3] - max(-pad[1], 0)]
    if f is None:
        return x[:, :, ::down, ::down] * gain if gain != 1 else x[:, :, ::down, ::down]
    f = (f * gain ** (f.ndim / 2)).flip(list(range(f.ndim))).to(x.dtype)
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c, stride=down)
    x = F.conv2d(x, f.reshape(1, 1, 1, -1).expand(c, 1, 1, f.numel()), groups=c,
                 stride=(1, down))
    return F.conv2d(x, f.reshape(1, 1, -1, 1).expand(c, 1, f.numel(), 1), groups=c,
                    stride=(down, 1))


class FourierInput(nn.Module):
    """w -> (B, channels, size, size): Fourier features turned and shifted by w."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float,
                 bandwidth: float):
        super().__init__()
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        self.affine = Dense(w_dim, 4)
        self.weight = nn.Parameter(torch.zeros(channels, channels))  # already / sqrt(channels)
        self.register_buffer("transform", torch.eye(3))  # the user's inverse transform
        self.register_buffer("freqs", torch.zeros(channels, 2))
        self.register_buffer("phases", torch.zeros(channels))
        theta = torch.tensor([[0.5 * size / self.sampling_rate, 0, 0],
                              [0, 0.5 * size / self.sampling_rate, 0]])
        grid = F.affine_grid(theta[None], [1, 1, size, size], align_corners=False)
        self.register_buffer("grid", grid, persistent=False)  # (1, size, size, 2)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)  # (B, 4): rotation cos, sin, translation x, y
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        zero, one = torch.zeros_like(t[:, 0]), torch.ones_like(t[:, 0])
        rotate = torch.stack([torch.stack([t[:, 0], -t[:, 1], zero], 1),
                              torch.stack([t[:, 1], t[:, 0], zero], 1),
                              torch.stack([zero, zero, one], 1)], 1)  # (B, 3, 3)
        shift = torch.stack([torch.stack([one, zero, -t[:, 2]], 1),
                             torch.stack([zero, one, -t[:, 3]], 1),
                             torch.stack([zero, zero, one], 1)], 1)
        transforms = rotate @ shift @ self.transform[None]
        phases = self.phases[None] + (self.freqs[None] @ transforms[:, :2, 2:]).squeeze(2)
        freqs = self.freqs[None] @ transforms[:, :2, :2]  # (B, C, 2)
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        x = (self.grid.unsqueeze(3) @ freqs.permute(0, 2, 1)[:, None, None]).squeeze(3)
        x = torch.sin((x + phases[:, None, None]) * (math.pi * 2)) * amplitudes[:, None, None]
        return (x @ self.weight.t()).permute(0, 3, 1, 2)  # (B, C, size, size)


class AliasFreeLayer(nn.Module):
    """A modulated convolution and a filtered leaky ReLU (or, for toRGB, 1x1 and linear)."""

    def __init__(self, w_dim: int, in_channels: int, out_channels: int, kernel: int, up: int,
                 down: int, padding: list[int], up_taps: int, down_taps: int,
                 down_radial: bool, torgb: bool, conv_clamp: float | None):
        super().__init__()
        self.affine = Dense(w_dim, in_channels)
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("gain", torch.ones(()))  # the input magnitude's 1 / rms
        self.up, self.down, self.padding = up, down, tuple(int(p) for p in padding)
        self.torgb, self.conv_clamp = torgb, conv_clamp
        self.register_buffer("up_filter", torch.zeros(up_taps) if up_taps > 1 else None)
        shape = (down_taps, down_taps) if down_radial else (down_taps,)
        self.register_buffer("down_filter", torch.zeros(shape) if down_taps > 1 else None)
        self.register_buffer("weight_sq", torch.zeros(out_channels, in_channels),
                             persistent=False)

    def refresh(self) -> None:
        self.weight_sq = self.weight.detach().square().sum(dim=[2, 3])

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (B, in); toRGB's gain is in the affine's weights
        k = self.weight.shape[-1]
        x = F.conv2d(x * styles[:, :, None, None], self.weight, padding=k - 1)
        scale = self.gain
        if not self.torgb:  # demodulate
            scale = scale * (styles.square().matmul(self.weight_sq.t()) + 1e-8).rsqrt()
            scale = scale[:, :, None, None]
        x = x * scale + self.bias[None, :, None, None]
        x = upfirdn(x, self.up_filter, up=self.up, pad=self.padding, gain=self.up**2)
        if self.torgb:
            x = x if self.conv_clamp is None else x.clamp(-self.conv_clamp, self.conv_clamp)
        else:
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
            if self.conv_clamp is not None:
                x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return upfirdn(x, self.down_filter, down=self.down)


class StyleGAN3Generator(DerivedOnLoad):
    """z (B, z_dim), [one-hot c (B, c_dim)], [psi (B, 1)] -> image (B, C, R, R), about [-1, 1].

    ``psi`` is the truncation: w moves toward the average w by that factor (1 or None: none).
    """

    takes_psi = True  # the truncation is an input of the network (gantool.latent)

    def __init__(self, resolution: int, img_channels: int, z_dim: int, c_dim: int, w_dim: int,
                 mapping_layers: int, input: dict, layers: list[dict],
                 conv_clamp: float | None = 256, output_scale: float = 0.25):
        super().__init__()
        self.resolution, self.classes, self.output_scale = resolution, c_dim, output_scale
        self.mapping = Mapping(z_dim, c_dim, w_dim, mapping_layers, w_dim, w_dim)
        self.input = FourierInput(w_dim, **input)
        self.layers = nn.ModuleList(AliasFreeLayer(w_dim, conv_clamp=conv_clamp, **spec)
                                    for spec in layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None,
                psi: torch.Tensor | None = None) -> torch.Tensor:
        w = self.mapping(z, c, psi)
        x = self.input(w)
        for layer in self.layers:
            x = layer(x, w)
        return x * self.output_scale
