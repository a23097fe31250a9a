"""StyleGAN2's generator (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN",
CVPR 2020), for drawing from imported weights (``gantool import``); gantool does not train it.

z (B, z_dim) -> mapping network -> w (B, w_dim), truncated toward the average w by psi ->
synthesis network: a learned 4x4 constant, then per resolution two modulated 3x3 convolutions
(the first upsampling by 2), each followed by constant noise, bias, leaky ReLU and an optional
clamp, and a modulated 1x1 "toRGB". ``skip`` sums every resolution's toRGB output, upsampled;
``resnet`` adds a 1x1 upsampling shortcut around each block and has one toRGB at the end;
``orig`` has neither.

Modulation is computed unfused: the activations are scaled by the styles before a convolution
whose weights the whole batch shares, and by the demodulation coefficients after it, so the
batch size stays dynamic in exported graphs. Upsampling is a transposed convolution followed by
the FIR low-pass filter. Noise is each layer's stored constant map, so an image is a function of
(z, class, psi) alone. Weights are stored with their runtime gains (the equalised learning rate)
already multiplied in.

Hyper-parameters (``ModelConfig.arch_params``): ``w_dim``, ``mapping_layers``, ``embed_features``
(class embedding width of a conditional model), ``channels`` (resolution -> feature maps),
``architecture``, ``conv_clamp`` (None: no clamp), ``use_noise``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURES = ("skip", "resnet", "orig")
LRELU_SLOPE, LRELU_GAIN = 0.2, math.sqrt(2)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each row scaled to unit mean square."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def lrelu_clamp(x: torch.Tensor, gain: float, clamp: float | None) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) times ``gain``, clamped to +-``clamp``."""
    x = F.leaky_relu(x, LRELU_SLOPE) * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


def fir_filter(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """The separable low-pass filter as a normalised 2-D kernel (its taps' outer product)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def fir(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """``x`` (B, C, H, W) filtered channel by channel with ``f`` times ``gain``, zero-padded by
    ``pad`` (before, after) on both axes."""
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    kernel = (f * gain).flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, kernel, groups=c)


def upsample(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): zeros between the pixels, then the FIR filter (gain 4),
    as one transposed convolution per channel."""
    c, taps = x.shape[1], f.shape[-1]
    kernel = (f * 4).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv_transpose2d(x, kernel, stride=2, padding=(taps - 1) // 2, groups=c)


class Dense(nn.Module):
    """y = x W^T + b, optionally leaky ReLU'd (gain sqrt 2)."""

    def __init__(self, n_in: int, n_out: int, lrelu: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.lrelu = lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.lrelu:
            return torch.addmm(self.bias[None], x, self.weight.t())
        return lrelu_clamp(x.matmul(self.weight.t()) + self.bias, LRELU_GAIN, None)


class Mapping(nn.Module):
    """z (B, z_dim) [and one-hot c (B, c_dim)] -> w (B, w_dim), truncated by psi (B, 1)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, layers: int, embed_features: int,
                 layer_features: int):
        super().__init__()
        self.c_dim = c_dim
        if c_dim:
            self.embed = Dense(c_dim, embed_features)
        widths = [z_dim + (embed_features if c_dim else 0)] + [layer_features] * (layers - 1)
        widths.append(w_dim)
        self.fcs = nn.ModuleList(Dense(a, b, lrelu=True) for a, b in zip(widths, widths[1:]))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None,
                psi: torch.Tensor | None) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.c_dim:
            x = torch.cat([x, normalize_2nd_moment(self.embed(c))], dim=1)
        for fc in self.fcs:
            x = fc(x)
        return x if psi is None else self.w_avg + psi * (x - self.w_avg)  # (B, w_dim)


class ModulatedConv(nn.Module):
    """A style-modulated k x k convolution: demodulated with constant noise, bias and leaky
    ReLU (a synthesis layer), or plain with bias (toRGB, k = 1)."""

    def __init__(self, n_in: int, n_out: int, w_dim: int, kernel: int, up: bool = False,
                 demodulate: bool = True, resolution: int = 0, noise: bool = False):
        super().__init__()
        self.affine = Dense(w_dim, n_in)
        self.weight = nn.Parameter(torch.zeros(n_out, n_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.up, self.demodulate = up, demodulate
        if noise:
            self.register_buffer("noise", torch.zeros(resolution, resolution))
        else:
            self.noise = None
        if demodulate:  # sum over (in, kh, kw) of weight^2, for the demodulation coefficients
            self.register_buffer("weight_sq", torch.zeros(n_out, n_in), persistent=False)

    def refresh(self) -> None:
        """Recompute what is derived from the weights (after loading them)."""
        if self.demodulate:
            self.weight_sq = self.weight.detach().square().sum(dim=[2, 3])

    def forward(self, x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, gain: float = 1.0,
                clamp: float | None = None) -> torch.Tensor:
        styles = self.affine(w)  # (B, in)
        x = x * styles[:, :, None, None]
        if self.up:  # transposed convolution, then the low-pass filter
            x = F.conv_transpose2d(x, self.weight.transpose(0, 1), stride=2)
            x = fir(x, f, (1, 1), gain=4.0)
        else:
            x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
        if not self.demodulate:  # toRGB
            x = x + self.bias[None, :, None, None]
            return x if clamp is None else x.clamp(-clamp, clamp)
        dcoefs = (styles.square().matmul(self.weight_sq.t()) + 1e-8).rsqrt()  # (B, out)
        x = x * dcoefs[:, :, None, None]
        if self.noise is not None:
            x = x + self.noise
        x = x + self.bias[None, :, None, None]
        return lrelu_clamp(x, LRELU_GAIN * gain, None if clamp is None else clamp * gain)


class Block(nn.Module):
    """One resolution of the synthesis network."""

    def __init__(self, n_in: int, n_out: int, w_dim: int, resolution: int, img_channels: int,
                 architecture: str, is_last: bool, use_noise: bool):
        super().__init__()
        self.architecture = architecture
        if n_in == 0:
            self.const = nn.Parameter(torch.zeros(n_out, resolution, resolution))
        else:
            self.conv0 = ModulatedConv(n_in, n_out, w_dim, 3, up=True, resolution=resolution,
                                       noise=use_noise)
        self.conv1 = ModulatedConv(n_out, n_out, w_dim, 3, resolution=resolution,
                                   noise=use_noise)
        self.torgb = (ModulatedConv(n_out, img_channels, w_dim, 1, demodulate=False)
                      if is_last or architecture == "skip" else None)
        self.skip = (nn.Conv2d(n_in, n_out, 1, bias=False)
                     if n_in and architecture == "resnet" else None)

    def forward(self, x, img, w, f, clamp):
        if x is None:
            x = self.const.unsqueeze(0).repeat(w.shape[0], 1, 1, 1)
            x = self.conv1(x, w, f, clamp=clamp)
        elif self.skip is not None:
            shortcut = upsample(self.skip(x), f) * math.sqrt(0.5)
            x = self.conv0(x, w, f, clamp=clamp)
            x = shortcut + self.conv1(x, w, f, gain=math.sqrt(0.5), clamp=clamp)
        else:
            x = self.conv1(self.conv0(x, w, f, clamp=clamp), w, f, clamp=clamp)
        if img is not None:
            img = upsample(img, f)
        if self.torgb is not None:
            y = self.torgb(x, w, f, clamp=clamp)
            img = y if img is None else img + y
        return x, img


class DerivedOnLoad(nn.Module):
    """A network holding values derived from its weights (each sub-module's ``refresh``),
    recomputed whenever weights are loaded."""

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict, assign)
        for m in self.modules():
            if m is not self and callable(getattr(m, "refresh", None)):
                m.refresh()
        return result


class StyleGAN2Generator(DerivedOnLoad):
    """z (B, z_dim), [one-hot c (B, c_dim)], [psi (B, 1)] -> image (B, C, R, R), about [-1, 1].

    ``psi`` is the truncation: w moves toward the average w by that factor (1 or None: none).
    """

    takes_psi = True  # the truncation is an input of the network (gantool.latent)

    def __init__(self, resolution: int, img_channels: int, z_dim: int, c_dim: int, w_dim: int,
                 mapping_layers: int, channels: dict, architecture: str = "skip",
                 conv_clamp: float | None = None, use_noise: bool = True,
                 embed_features: int | None = None, layer_features: int | None = None):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown StyleGAN2 architecture {architecture!r}")
        self.resolution, self.classes, self.conv_clamp = resolution, c_dim, conv_clamp
        self.mapping = Mapping(z_dim, c_dim, w_dim, mapping_layers, embed_features or w_dim,
                               layer_features or w_dim)
        widths = {int(r): int(n) for r, n in channels.items()}
        self.resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        self.blocks = nn.ModuleDict({
            str(r): Block(widths[r // 2] if r > 4 else 0, widths[r], w_dim, r, img_channels,
                          architecture, r == resolution, use_noise)
            for r in self.resolutions})
        self.register_buffer("fir", fir_filter())

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None,
                psi: torch.Tensor | None = None) -> torch.Tensor:
        w = self.mapping(z, c, psi)
        x = img = None
        for r in self.resolutions:
            x, img = self.blocks[str(r)](x, img, w, self.fir, self.conv_clamp)
        return img
