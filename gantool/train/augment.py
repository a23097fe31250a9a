"""Differentiable augmentation (Zhao et al. 2020, "DiffAugment") for small datasets.

The same random transforms are applied to every image D sees, real and fake, in both the D and
the G update; they are differentiable, so G learns through them. D then cannot memorise a few
thousand images, and G is not taught to produce augmented-looking images because the
augmentation sits in front of D for both. Randomness comes from the global torch RNG (saved in
every checkpoint), so resumed runs stay exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gantool.config import AUGMENTS


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply ``policy`` to x (B, C, H, W) in [-1, 1], each image with its own random draw."""
    for name in policy:
        x = _AUGMENTS[name](x)
    return x


def _color(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    r = torch.rand(b, 3, 1, 1, device=x.device, dtype=x.dtype)  # brightness, saturation, contrast
    x = x + (r[:, :1] - 0.5)  # brightness: +U(-0.5, 0.5)
    if x.shape[1] > 1:  # saturation: scale the distance to the grey value by U(0, 2)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (r[:, 1:2] * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # contrast: scale around the mean by U(0.5, 1.5)
    return (x - mean) * (r[:, 2:3] + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with zeros (mid-grey)."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) + dy  # (B, H, 1) source row
    xs = torch.arange(w, device=x.device).view(1, 1, w) + dx  # (B, 1, W) source column
    ys, xs = (ys + 1).clamp(0, h + 1), (xs + 1).clamp(0, w + 1)  # into the zero-padded frame
    padded = F.pad(x, [1, 1, 1, 1])  # (B, C, H + 2, W + 2): the border is the fill
    flat = (ys * (w + 2) + xs).view(b, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` x the image size per image, centred anywhere (clipped)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (b, 1, 1), device=x.device) - ch // 2  # may start off the edge
    left = torch.randint(0, w, (b, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


# train.augment name (the config's list, in its order) -> transform
_AUGMENTS = dict(zip(AUGMENTS, (_color, _translation, _cutout), strict=True))
