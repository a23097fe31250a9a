"""A few-shot generator and a self-supervised discriminator in the manner of FastGAN (Liu et al.,
ICLR 2021, "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image
Synthesis"), written for gantool's contract: one z, one image, on every backend.

Sizes are counted in levels: the resolution is ``base * 2**k`` and level i is the feature map
at ``base * 2**i`` (with base 4: level 0 is 4x4, level 4 is 64x64, level 8 is 1024x1024).
Widths follow the paper's table per level, times ``ngf``/``ndf``, capped at ``max_channels``
(the paper runs ngf = ndf = 64 with 1024 channels at 4x4).

Generator: z -> a base x base map (a transposed conv, BatchNorm, GLU), then one upsampling block
per level: nearest-neighbour x2, 3x3 conv to twice the width, BatchNorm, GLU; every other level
a second conv/BN/GLU. Skip-layer excitation: the map at level i - 4, pooled to base x base,
gates the channels of the map at level i (a base x base conv, Swish, a 1x1 conv, sigmoid), so
8 px structure steers 128 px texture. FastGAN adds noise drawn with ``torch.randn`` inside
``forward`` (after each conv of the doubled blocks), which would make an image depend on its
batch and the RNG state. gantool injects none by default; with ``noise=True`` it adds fresh
noise while training and, in eval mode (every drawing, every export), one fixed noise map per
layer stored with the weights, as StyleGAN's "const" noise mode draws: an image stays a function
of its z alone.

Discriminator: the image is brought to at most level 6 (256 px; strided convs above it), then
halved by residual down blocks (a strided conv path plus an average-pool path) to level 1, where
1x1 and 4x4 convs give a map of patch logits. A second, small branch sees the image
downsampled to level <= 5 and adds its own patch logits. Channel excitation runs from level
i + 3 to level i. With ``reconstruct=True`` it also returns its self-supervised loss: three
small decoders must redraw, from D's level-1 features, the whole image, one random quarter of
it (from the level-2 features of that quarter) and, from the small branch, the image again;
the loss is their mean squared error against the real image at the decoders' size (FastGAN
uses LPIPS, whose VGG weights cannot be fetched on every machine; lightweight-gan uses MSE).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantool.errors import ConfigError
from gantool.models.layers import (
    ClassSequential,
    Projection,
    batch_norm,
    dcgan_init,
    resolution_plan,
)

# FastGAN's channel multipliers by level (4, 8, ..., 1024 px with base 4)
G_WIDTHS = (16, 8, 4, 2, 2, 1, 0.5, 0.25, 0.125)
D_WIDTHS = (16, 16, 8, 4, 2, 1, 0.5, 0.25, 0.125)
MIN_LEVELS = 4  # the smallest model: 4 doublings (64 px with base 4)
SLE_SPAN = 4  # G: level i - 4 excites level i (8 -> 128 px)
D_SE_SPAN = 3  # D: level i + 3 excites level i
D_TRUNK_TOP = 6  # D's residual trunk starts at most at level 6 (256 px)
D_SMALL_TOP = 5  # its small branch sees the image at most at level 5 (128 px)


def levels(resolution: int) -> tuple[int, int]:
    """(base, k) of a fastgan resolution; ConfigError when it is too small for the design."""
    base, k = resolution_plan(resolution)
    if k < MIN_LEVELS:
        ok = ", ".join(str(b * 2**MIN_LEVELS) for b in sorted((3, 4, 5, 7)))
        raise ConfigError(f"model.arch/d_arch fastgan needs at least {MIN_LEVELS} doublings of "
                          f"the base size: {resolution} px is too small (smallest: {ok} px)")
    return base, k


def _width(table: tuple[float, ...], level: int, width: int, cap: int) -> int:
    return max(1, min(cap, int(table[min(level, len(table) - 1)] * width)))


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class Noise(nn.Module):
    """x + weight * noise (weight learned, from 0): fresh N(0, 1) per pixel while training, one
    fixed map (a buffer drawn from ``seed``) in eval mode."""

    def __init__(self, size: int, seed: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        fixed = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("fixed", fixed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x + self.weight * torch.randn_like(x[:, :1])
        return x + self.weight * self.fixed


def _up(c_in: int, c_out: int, double: bool, noise_size: int = 0,
        classes: int = 0) -> ClassSequential:
    """Nearest x2, 3x3 conv to 2 * c_out, BatchNorm, GLU (twice with ``double``); with
    ``noise_size``, noise after each BatchNorm (there, the BatchNorm still folds into its conv);
    with ``classes``, class-conditional BatchNorms."""
    layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")]
    for j, c in enumerate((c_in, c_out)[: 1 + double]):
        layers += [nn.Conv2d(c, 2 * c_out, 3, 1, 1, bias=False), batch_norm(2 * c_out, classes)]
        if noise_size:
            layers.append(Noise(noise_size, seed=2 * noise_size + j))
        layers.append(nn.GLU(dim=1))
    return ClassSequential(*layers)


class Excitation(nn.Module):
    """Skip-layer excitation: ``small`` (B, c_small, s, s), average-pooled to ``pooled`` x
    ``pooled``, becomes a per-channel gate in (0, 1) for ``big`` (B, c_big, S, S)."""

    def __init__(self, c_small: int, c_big: int, pooled: int, act: nn.Module):
        super().__init__()
        self.pooled = pooled
        self.gate = nn.Sequential(nn.Conv2d(c_small, c_big, pooled, 1, 0, bias=False), act,
                                  nn.Conv2d(c_big, c_big, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        # a plain average pool (the size is a multiple of ``pooled``): exports as one ONNX op
        small = F.avg_pool2d(small, small.shape[-1] // self.pooled)
        return big * self.gate(small)  # (B, c_big, S, S)


class FastGANGenerator(nn.Module):
    """z (B, nz) -> image (B, C, R, R) in [-1, 1]: GLU upsampling blocks and skip-layer
    excitation; no noise inputs, so an image is a function of its z alone (``noise``: FastGAN's
    noise in the doubled blocks while training, fixed maps in eval mode). With ``classes``, the
    BatchNorms are class-conditional and ``c`` (B, classes) is an input."""

    def __init__(self, resolution: int, channels: int = 3, nz: int = 256, ngf: int = 64,
                 max_channels: int = 1024, noise: bool = False, classes: int = 0):
        super().__init__()
        self.base, k = levels(resolution)
        self.nz, self.classes = nz, classes
        w = [_width(G_WIDTHS, i, ngf, max_channels) for i in range(k + 1)]
        self.init = ClassSequential(
            nn.ConvTranspose2d(nz, 2 * w[0], self.base, 1, 0, bias=False),
            batch_norm(2 * w[0], classes), nn.GLU(dim=1))  # (B, w0, base, base)
        self.ups = nn.ModuleList(
            _up(w[i - 1], w[i], double=i % 2 == 1,
                noise_size=self.base * 2**i if noise and i % 2 == 1 else 0, classes=classes)
            for i in range(1, k + 1))
        self.sle = nn.ModuleDict({str(i): Excitation(w[i - SLE_SPAN], w[i], self.base, Swish())
                                  for i in range(SLE_SPAN, k + 1)})
        self.to_image = nn.Sequential(nn.Conv2d(w[k], channels, 3, 1, 1, bias=False), nn.Tanh())
        dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.init(z.view(z.shape[0], self.nz, 1, 1), c)
        feats = [x]
        for i, up in enumerate(self.ups, start=1):
            x = up(x, c)
            if str(i) in self.sle:
                x = self.sle[str(i)](feats[i - SLE_SPAN], x)
            feats.append(x)
        return self.to_image(x)  # (B, C, R, R)


class DownBlock(nn.Module):
    """Halve the map: (4x4 stride-2 conv, BN, LeakyReLU, 3x3 conv, BN, LeakyReLU) averaged with
    (2x2 average pool, 1x1 conv, BN, LeakyReLU)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, True))
        self.direct = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False),
                                    nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


def _decoder(c_in: int, steps: int, channels: int, widths: list[int]) -> nn.Sequential:
    """A small decoder: ``steps`` GLU upsampling blocks from c_in, then a 3x3 conv and tanh."""
    layers: list[nn.Module] = []
    for c_out in widths[:steps]:
        layers.append(_up(c_in, c_out, double=False))
        c_in = c_out
    layers += [nn.Conv2d(c_in, channels, 3, 1, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


class FastGANDiscriminator(nn.Module):
    """image (B, C, R, R) -> patch logits (B, N) of a big and a small branch; with
    ``reconstruct=True`` also the self-supervised reconstruction loss (a scalar)."""

    def __init__(self, resolution: int, channels: int = 3, ndf: int = 64,
                 max_channels: int = 1024, spectral_norm: bool = False, classes: int = 0):
        super().__init__()
        base, k = levels(resolution)
        w = [_width(D_WIDTHS, i, ndf, max_channels) for i in range(k + 1)]
        self.top = top = min(k, D_TRUNK_TOP)
        entry: list[nn.Module] = []
        c = channels
        for i in range(k, top, -1):  # strided convs down to the trunk's top level
            entry += [nn.Conv2d(c, w[i - 1], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
            c = w[i - 1]
        if k == top:
            entry += [nn.Conv2d(c, w[top], 3, 1, 1, bias=False), nn.LeakyReLU(0.2, True)]
        self.entry = nn.Sequential(*entry)  # (B, w[top], size of level top)
        self.downs = nn.ModuleList(DownBlock(w[i], w[i - 1]) for i in range(top, 1, -1))
        self.se = nn.ModuleDict({str(i): Excitation(w[i + D_SE_SPAN], w[i], base,
                                                    nn.LeakyReLU(0.1))
                                 for i in range(1, top - D_SE_SPAN + 1)})
        self.logits = nn.Sequential(nn.Conv2d(w[1], 4 * w[1], 1, 1, 0, bias=False),
                                    nn.BatchNorm2d(4 * w[1]), nn.LeakyReLU(0.2, True),
                                    nn.Conv2d(4 * w[1], 1, base, 1, 0, bias=False))
        self.small_size = base * 2 ** min(k - 1, D_SMALL_TOP)
        small_top = min(k - 1, D_SMALL_TOP)
        self.small = nn.Sequential(
            nn.Conv2d(channels, w[small_top - 1], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            *[DownBlock(w[i], w[i - 1]) for i in range(small_top - 1, 1, -1)])
        self.small_logits = nn.Conv2d(w[1], 1, base, 1, 0, bias=False)
        # decoders redraw the image at level rec = min(k - 1, 5) from level-1 features
        self.rec_size = base * 2 ** min(k - 1, D_SMALL_TOP)
        rec_steps = min(k - 1, D_SMALL_TOP) - 1
        # narrow decoders, as the paper's: G's table at half of ndf
        dec_widths = [_width(G_WIDTHS, i, max(1, ndf // 2), max_channels)
                      for i in range(2, 2 + rec_steps)]
        self.decode_whole = _decoder(w[1], rec_steps, channels, dec_widths)
        self.decode_part = _decoder(w[2], rec_steps, channels, dec_widths)
        self.decode_small = _decoder(w[1], rec_steps, channels, dec_widths)
        # projection discriminator terms of both branches (Miyato & Koyama 2018)
        self.project = (nn.ModuleList([Projection(4 * w[1], classes), Projection(w[1], classes)])
                        if classes else None)
        dcgan_init(self)
        if spectral_norm:  # every conv of D, as FastGAN does
            convs = [(m, name, c) for m in self.modules() for name, c in m.named_children()
                     if isinstance(c, nn.Conv2d)]
            for parent, name, conv in convs:
                setattr(parent, name, nn.utils.parametrizations.spectral_norm(conv))
            for projection in self.project or ():
                projection.spectral_norm()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, reconstruct: bool = False,
                classify: bool = False):
        """Patch logits (B, N); with ``reconstruct``, also the reconstruction loss; with
        ``classify`` (a conditional D), also the class scores (B, K), in that order."""
        feats = {self.top: self.entry(x)}
        h = feats[self.top]
        for i, down in zip(range(self.top - 1, 0, -1), self.downs):
            h = down(h)
            if str(i) in self.se:
                h = self.se[str(i)](feats[i + D_SE_SPAN], h)
            feats[i] = h
        small_in = F.interpolate(x, size=self.small_size, mode="bilinear", align_corners=False,
                                 antialias=True)
        s = self.small(small_in)  # (B, w1, 2 * base, 2 * base)
        scores = None
        if self.project is None:
            logits = torch.cat([self.logits(h).flatten(1), self.small_logits(s).flatten(1)], 1)
        else:  # each branch's class term is added to each of its patch logits
            f = self.logits[:-1](h)  # (B, 4 * w1, base, base)
            (big, big_scores), (small, small_scores) = self.project[0](f, c), self.project[1](s, c)
            logits = torch.cat([self.logits[-1](f).flatten(1) + big[:, None],
                                self.small_logits(s).flatten(1) + small[:, None]], dim=1)
            scores = big_scores + small_scores
        extra = ([self._reconstruction_loss(x, feats, s)] if reconstruct else []) + (
            [scores] if classify else [])
        return (logits, *extra) if extra else logits  # logits (B, N)

    def _reconstruction_loss(self, x: torch.Tensor, feats: dict, s: torch.Tensor) -> torch.Tensor:
        """MSE of the three decoders' drawings against the real image (and a random quarter)."""
        target = F.interpolate(x, size=self.rec_size, mode="bilinear", align_corners=False,
                               antialias=True)
        big = F.interpolate(x, size=2 * self.rec_size, mode="bilinear", align_corners=False,
                            antialias=True)
        # one quarter per batch, from the run's torch RNG, picked on the device (no host sync,
        # so a captured CUDA graph replays it)
        part = torch.randint(4, (1,), device=x.device)
        quarter = _quarters(feats[2]).index_select(0, part)[0]  # (B, w2, base, base)
        part_target = _quarters(big).index_select(0, part)[0]  # (B, C, rec, rec)
        return (F.mse_loss(self.decode_whole(feats[1]).float(), target.float())
                + F.mse_loss(self.decode_part(quarter).float(), part_target.float())
                + F.mse_loss(self.decode_small(s).float(), target.float()))


def _quarters(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 2h, 2w) -> its four quarters (4, B, C, h, w): top left, top right, bottom left,
    bottom right."""
    top, bottom = x.chunk(2, dim=-2)
    return torch.stack([*top.chunk(2, dim=-1), *bottom.chunk(2, dim=-1)])
