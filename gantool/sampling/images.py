"""Generator output -> uint8 images, grids and files on disk."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from gantool.fileio import atomic_write


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float images in [-1, 1], (B, C, H, W) -> uint8 (B, H, W, C).

    The mapping is round((x + 1) * 127.5) clamped to [0, 255], rounding half to even: the same
    arithmetic an exported graph uses, so every backend produces the same bytes.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.clip(np.round((x + np.float32(1.0)) * np.float32(127.5)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def to_uint8_tensor(x):
    """``to_uint8`` as torch operations, on the tensor's own device (B, C, H, W) -> (B, H, W, C):
    the same float32 arithmetic and rounding, so the bytes are identical; a GPU then sends a
    quarter of the bytes to the host, and exported graphs compute it inside."""
    import torch  # here, so that writing images needs no torch

    x = ((x.float() + 1.0) * 127.5).round().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def make_grid(images: np.ndarray, ncols: int | None = None, padding: int = 2, pad_value: int = 0):
    """Tile uint8 images (B, H, W, C) into one uint8 image (rows*H', cols*W', C)."""
    b, h, w, c = images.shape
    ncols = ncols or max(1, math.ceil(math.sqrt(b)))
    nrows = math.ceil(b / ncols)
    grid = np.full(
        (nrows * (h + padding) + padding, ncols * (w + padding) + padding, c),
        pad_value,
        dtype=np.uint8,
    )
    for i, img in enumerate(images):
        r, col = divmod(i, ncols)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = img
    return grid


def pil_image(image: np.ndarray) -> Image.Image:
    """uint8 (H, W, C) with C in {1, 3, 4} -> PIL image."""
    if image.shape[-1] == 1:
        return Image.fromarray(image[..., 0], mode="L")
    return Image.fromarray(image)


IMAGE_FORMATS = ("png", "jpg", "webp", "npy")
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def save_image(image: np.ndarray, path: str | os.PathLike, durable: bool = True) -> Path:
    """Write a uint8 (H, W, C) image atomically; the format comes from the suffix (.npy: the
    array itself). ``durable``: see ``gantool.fileio.atomic_write``."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        with atomic_write(path, durable) as f:
            np.save(f, image)
        return path
    fmt = _format(path)
    with atomic_write(path, durable) as f:
        pil_image(image).save(f, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
    return path


def save_grid(images: np.ndarray, path: str | os.PathLike, ncols: int | None = None) -> Path:
    """Tile uint8 images (B, H, W, C) and write the grid atomically."""
    return save_image(make_grid(images, ncols), path)


def seed_filename(seed: int, ext: str = "png") -> str:
    """The file name of one seed's image, shared by every command that writes images."""
    return f"seed{seed:06d}.{ext}"


def _format(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    formats = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}
    if ext not in formats:
        raise ValueError(f"cannot write {path.name}: use one of .{', .'.join(formats)}")
    return formats[ext]
