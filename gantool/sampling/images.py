"""Generator output -> uint8 images, grids and files on disk."""

from __future__ import annotations

import functools
import io
import math
import os
from dataclasses import dataclass, replace
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
_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}
Z_RLE = 3  # zlib's run-length strategy: as small as the default here, at 3x its speed


@functools.cache
def fast_png():
    """The ``fpng`` module (the ``fastpng`` extra) when it imports, else None."""
    try:
        import fpng
    except ImportError:
        return None
    return fpng


@dataclass(frozen=True)
class Encoding:
    """How images become bytes: a format and its speed/size knobs (picklable, so process
    workers get it as it is).

    ``png_level`` None picks the fastest exact PNG writer: ``fpng`` for RGB/RGBA where it is
    installed (37-53x Pillow's default at 1024 px, measured), else Pillow at zlib level 1 with
    the run-length strategy (3x, files as small as the default). A level 0-9 always uses
    Pillow's zlib at that level. ``quality`` (1-100) is JPEG's and WebP's.
    """

    fmt: str = "png"
    png_level: int | None = None
    quality: int = 95

    def __post_init__(self):
        if self.fmt not in IMAGE_FORMATS:
            raise ValueError(f"unknown image format {self.fmt!r}; choose "
                             f"{', '.join(IMAGE_FORMATS)}")
        if self.png_level is not None and not 0 <= self.png_level <= 9:
            raise ValueError(f"PNG level {self.png_level} is outside 0-9")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality {self.quality} is outside 1-100")

    def encoder(self, channels: int) -> str:
        """The library that writes images of ``channels`` channels: fpng, pillow or numpy."""
        if self.fmt == "npy":
            return "numpy"
        if self.fmt == "png" and self.png_level is None and channels in (3, 4) and fast_png():
            return "fpng"
        return "pillow"

    def holds_gil(self, channels: int) -> bool:
        """Whether encoding keeps Python's GIL (threads would take turns; use processes).
        Measured: fpng and Pillow's JPEG do not scale with threads, Pillow's PNG (zlib) and
        WebP encoders and npy writes do."""
        return self.encoder(channels) == "fpng" or self.fmt == "jpg"

    def encode(self, image: np.ndarray) -> bytes:
        """uint8 (H, W, C) -> the file's bytes."""
        encoder = self.encoder(image.shape[-1])
        if encoder == "fpng":
            return fast_png().from_ndarray(np.ascontiguousarray(image))
        out = io.BytesIO()
        if encoder == "numpy":
            np.save(out, image)
        elif self.fmt == "png":
            level = 1 if self.png_level is None else self.png_level
            strategy = Z_RLE if self.png_level is None else -1
            pil_image(image).save(out, format="PNG", compress_level=level,
                                  compress_type=strategy)
        else:
            options = {"quality": self.quality}
            if self.fmt == "webp":
                options["method"] = 0  # 3.3x method 4's speed at 1024 px, no larger files
            pil_image(image).save(out, format=_PIL_FORMATS[self.fmt], **options)
        return out.getvalue()


def save_image(image: np.ndarray, path: str | os.PathLike, durable: bool = True,
               encoding: Encoding | None = None) -> Path:
    """Write a uint8 (H, W, C) image atomically; the format comes from the suffix (.npy: the
    array itself), the knobs from ``encoding``. ``durable``: see ``gantool.fileio.atomic_write``.
    """
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    fmt = {"jpeg": "jpg"}.get(ext, ext)
    if fmt not in IMAGE_FORMATS:
        if ext not in _PIL_FORMATS:
            raise ValueError(f"cannot write {path.name}: use one of "
                             f".{', .'.join(_PIL_FORMATS)}, .npy")
        data = io.BytesIO()
        pil_image(image).save(data, format=_PIL_FORMATS[ext])
        data = data.getvalue()
    else:
        data = replace(encoding or Encoding(), fmt=fmt).encode(image)
    with atomic_write(path, durable) as f:
        f.write(data)
    return path


def save_grid(images: np.ndarray, path: str | os.PathLike, ncols: int | None = None) -> Path:
    """Tile uint8 images (B, H, W, C) and write the grid atomically."""
    return save_image(make_grid(images, ncols), path)


def seed_filename(seed: int, ext: str = "png", stem: str = "seed") -> str:
    """The file name of one seed's image (``stem`` "frame": a video frame's), shared by every
    command that writes images."""
    return f"{stem}{seed:06d}.{ext}"


SUBDIR_SIZE = 1000  # seeds per sub-folder of the subdirs layout


def seed_path(seed: int, ext: str = "png", stem: str = "seed", subdirs: bool = False) -> str:
    """Where one seed's image goes in its folder: ``seed000042.png``, or with ``subdirs`` in the
    sub-folder of its thousand, ``001000/seed001042.png`` (a folder of millions of files is slow
    to list and to copy)."""
    name = seed_filename(seed, ext, stem)
    return f"{seed - seed % SUBDIR_SIZE:06d}/{name}" if subdirs else name
