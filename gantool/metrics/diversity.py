"""Sample diversity: how far each of a generator's images (for different seeds) is from the most
similar other one, relative to the same for real images. A generator that draws one picture, or
a few, for every z scores near 0; one as varied as the data scores about 1.

Images are area-downsampled to 8x8 first, so that per-seed noise and texture (which a collapsed
generator may still vary) do not count, only colour and layout. Distances are RMS over pixels
and channels, values in [0, 1]; the nearest-neighbour form (rather than the mean over all
pairs) falls to 0 as soon as every sample has a twin, e.g. 4 pictures for 64 seeds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 8


def nearest_distance(images: np.ndarray | torch.Tensor, channels_last: bool = True) -> float:
    """Mean distance from each uint8 image to its nearest other one: (N, H, W, C), or
    (N, C, H, W) with ``channels_last=False``; N >= 2."""
    x = torch.as_tensor(images)
    if len(x) < 2:
        raise ValueError("diversity needs at least 2 images")
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0)
    if x.shape[-1] > SIZE or x.shape[-2] > SIZE:
        x = F.adaptive_avg_pool2d(x, SIZE)
    flat = x.flatten(1).double()
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.mean())


def diversity(fake: np.ndarray | torch.Tensor, real_distance: float) -> float:
    """``nearest_distance`` of ``fake`` (uint8 NHWC) over that of as many real images."""
    return nearest_distance(fake) / max(real_distance, 1e-8)
