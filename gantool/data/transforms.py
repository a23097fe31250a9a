"""Per-image transforms: any Pillow image -> (C, R, R) uint8 at the training resolution.

Pipeline for one image (``prepare``):

1. ``draft`` (JPEG only): let the decoder downscale by 1/2, 1/4 or 1/8 in the DCT domain,
   never below the size the fit needs, so big photos decode fast.
2. EXIF orientation is applied, so photos come out upright.
3. ``flatten``: to 8-bit L or RGB. Alpha (RGBA, LA, PA, RGBa, palette or RGB/L with a
   ``transparency`` entry) is alpha-blended onto ``background`` at full resolution;
   16/32-bit and float greyscale is rescaled, not clipped (see ``_to_8bit``).
4. ``fit_resize``: "crop" scales the shorter side to R and centre-crops; "pad" scales the
   longer side to R and pads centred with ``background``. The filter is Lanczos for both
   up- and downscaling (``reducing_gap=3`` makes big downscales fast at no visible cost).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageOps

RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 3.0

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_EXIF_ORIENTATION = 0x0112


def background_luma(background: tuple[int, int, int]) -> int:
    """The grey level Pillow's RGB -> L conversion gives ``background`` (ITU-R 601 luma)."""
    return int(Image.new("RGB", (1, 1), tuple(background)).convert("L").getpixel((0, 0)))


def _to_8bit(img: Image.Image) -> Image.Image:
    """High-depth greyscale -> L, scaling the full range (Pillow's own convert clips at 255).

    "I" and "I;16*" are taken to span 0..65535 (16-bit PNG/TIFF; wider values are clipped);
    "F" spans 0..1 if every value lies in [0, 1], else 0..255 (clipped).
    """
    a = np.asarray(img, dtype=np.float64)  # (H, W)
    if img.mode == "F":
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if a.size and a.min() >= 0.0 and a.max() <= 1.0 else 1.0
        a = a * scale
    else:
        a = np.clip(a, 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def flatten(img: Image.Image, channels: int, background: tuple[int, int, int]) -> Image.Image:
    """Any mode -> "L" (channels=1) or "RGB" (channels=3); alpha is blended onto ``background``."""
    if img.mode in _HIGH_DEPTH_MODES:
        img = _to_8bit(img)
    has_alpha = img.mode in _ALPHA_MODES or img.info.get("transparency") is not None
    if has_alpha:
        if img.mode != "RGBA":
            img = img.convert("RGBA")  # P/L/RGB + transparency, LA, PA, premultiplied modes
        canvas = Image.new("RGB", img.size, tuple(background))
        canvas.paste(img, (0, 0), img)  # alpha blend: rgb * a + bg * (1 - a)
        img = canvas
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")  # 1, P, CMYK, YCbCr, RGBX, ... via RGB
        if img.mode != target:
            img = img.convert(target)  # L -> RGB replicates the grey level
    return img


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block does not make the pixels unreadable
        return 1


def _scale(size: tuple[int, int], resolution: int, fit: str) -> float:
    w, h = size
    return resolution / (min(w, h) if fit == "crop" else max(w, h))


def fit_resize(
    img: Image.Image, resolution: int, fit: str, background: tuple[int, int, int]
) -> Image.Image:
    """An L or RGB image -> the same mode at (resolution, resolution), by ``fit`` (see module)."""
    r = resolution
    w, h = img.size
    if (w, h) == (r, r):
        return img
    if fit == "crop":
        s = min(w, h)  # centre square of the source, resized straight to (r, r)
        x0, y0 = (w - s) / 2, (h - s) / 2
        return img.resize((r, r), RESAMPLE, box=(x0, y0, x0 + s, y0 + s), reducing_gap=REDUCING_GAP)
    k = _scale((w, h), r, fit)
    tw, th = max(1, min(r, round(w * k))), max(1, min(r, round(h * k)))
    small = img.resize((tw, th), RESAMPLE, reducing_gap=REDUCING_GAP)
    fill = background_luma(background) if img.mode == "L" else tuple(background)
    canvas = Image.new(img.mode, (r, r), fill)
    canvas.paste(small, ((r - tw) // 2, (r - th) // 2))
    return canvas


def prepare(
    img: Image.Image,
    resolution: int,
    channels: int,
    fit: str,
    background: tuple[int, int, int],
) -> np.ndarray:
    """A freshly opened image -> (channels, resolution, resolution) uint8 (full pipeline)."""
    k = _scale(img.size, resolution, fit)
    if k < 1.0 and img.format == "JPEG":
        img.draft(None, (math.ceil(img.width * k), math.ceil(img.height * k)))
    img.load()
    if _orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    img = fit_resize(flatten(img, channels, background), resolution, fit, background)
    a = np.asarray(img)  # (R, R) or (R, R, 3)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, R, R)
