"""Latent walks: the z of every frame of a loop through keyframe seeds (numpy only).

Keyframes are drawn by the latent contract (``latent.py``), so frame 0 of a walk is exactly the
z of its first seed, and every ``frames_per_seed``-th frame the z of the next one: those frames
are the very images ``gantool generate`` draws for the seeds. Between keyframes the path
respects the prior:

- normal prior: spherical interpolation. The direction moves along the great circle between
  the two keyframes at constant angular speed, and the norm moves linearly from one keyframe's
  norm to the other's, so every frame stays at the radius where the prior's mass lies (a
  straight line would pass through the low-norm middle, where images wash out). With a
  truncation t, values are then clipped to [-t, t], the box every seed's z lies in.
- uniform prior: a straight line, which never leaves the box [-t, t] its keyframes lie in.
- stylegan prior: z is normal and never truncated, so the walk is spherical and unclipped; the
  network applies the walk's truncation (psi) to every frame.

A walk of several cells (``--grid``) moves every cell at once, each through its own seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gantool.latent import NETWORK_TRUNCATION, latents

MAX_KEYFRAMES = 100_000  # keyframe z are held whole: 100k x nz 512 is 200 MB


def slerp(a: np.ndarray, b: np.ndarray, s) -> np.ndarray:
    """Points ``s`` of the way from ``a`` to ``b`` (vectors on the last axis; ``s`` broadcasts
    against their other axes, e.g. (n,) for one pair gives (n, nz)): directions on the great
    circle at constant angular speed, norms linear in ``s``. Computed in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    s = np.asarray(s, np.float64)[..., None]
    na = np.linalg.norm(a, axis=-1, keepdims=True)
    nb = np.linalg.norm(b, axis=-1, keepdims=True)
    ua, ub = a / np.maximum(na, 1e-30), b / np.maximum(nb, 1e-30)
    omega = np.arccos(np.clip(np.sum(ua * ub, axis=-1, keepdims=True), -1.0, 1.0))
    sin = np.sin(omega)
    # Parallel (or opposite) keyframes have no one great circle: go straight, then renormalise.
    straight = sin < 1e-6
    safe = np.where(straight, 1.0, sin)
    wa = np.where(straight, 1 - s, np.sin((1 - s) * omega) / safe)
    wb = np.where(straight, s, np.sin(s * omega) / safe)
    direction = wa * ua + wb * ub
    direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-30)
    return direction * ((1 - s) * na + s * nb)


def lerp(a: np.ndarray, b: np.ndarray, s) -> np.ndarray:
    """Points ``s`` of the straight line from ``a`` to ``b`` (broadcast as in ``slerp``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a + np.asarray(s, np.float64)[..., None] * (b - a)


@dataclass(frozen=True)
class Walk:
    """``keys`` (cells, k, nz) float32: each cell's keyframe z, in order. Frame i lies
    ``i % frames_per_key / frames_per_key`` of the way from key ``i // frames_per_key`` to the
    next one (the first again, with ``loop``)."""

    keys: np.ndarray
    frames_per_key: int
    prior: str
    truncation: float | None
    loop: bool = True

    @property
    def cells(self) -> int:
        return self.keys.shape[0]

    @property
    def frames(self) -> int:
        """Frames in the walk: a loop ends one frame before it is back at its first key."""
        k = self.keys.shape[1]
        return k * self.frames_per_key if self.loop else (k - 1) * self.frames_per_key + 1

    def latents(self, frames: Sequence[int]) -> np.ndarray:
        """z of ``frames`` (frame numbers), float32 (len(frames), cells, nz)."""
        frames = np.asarray(frames, np.int64).reshape(-1)
        if len(frames) and (frames.min() < 0 or frames.max() >= self.frames):
            raise ValueError(f"frame numbers must lie in 0..{self.frames - 1}")
        k = self.keys.shape[1]
        seg, step = np.divmod(frames, self.frames_per_key)
        a = self.keys[:, seg % k].transpose(1, 0, 2)  # (n, cells, nz)
        b = self.keys[:, (seg + 1) % k].transpose(1, 0, 2)
        path = lerp if self.prior == "uniform" else slerp
        z = path(a, b, (step / self.frames_per_key)[:, None])  # (n, cells, nz) float64
        if self.truncation is not None and self.prior not in NETWORK_TRUNCATION:
            np.clip(z, -self.truncation, self.truncation, out=z)
        z = z.astype(np.float32)
        z[step == 0] = a[step == 0]  # keyframes exactly as the latent contract draws them
        return z


def make_walk(seeds: Sequence[int], cells: int, frames_per_seed: int, nz: int, prior: str,
              truncation: float | None, loop: bool = True) -> Walk:
    """A walk through ``seeds``: cell c visits seeds ``c*k .. c*k+k-1``, k = len(seeds) / cells
    (as stylegan3's gen_video lays out ``--seeds 0-31 --grid 4x2``). Raises ValueError."""
    if cells < 1 or len(seeds) % cells:
        raise ValueError(f"{len(seeds)} seeds do not split evenly over {cells} walks; pass a "
                         f"multiple of {cells} seeds")
    k = len(seeds) // cells
    if k < 2:
        raise ValueError(f"each walk needs at least 2 seeds to move between; pass at least "
                         f"{2 * cells} seeds")
    if len(seeds) > MAX_KEYFRAMES:
        raise ValueError(f"a walk through {len(seeds):,} seeds is too long (at most "
                         f"{MAX_KEYFRAMES:,}); split it into several videos")
    if frames_per_seed < 1:
        raise ValueError("frames per seed must be at least 1")
    keys = latents(list(seeds), nz, prior, truncation).reshape(cells, k, nz)
    return Walk(keys, frames_per_seed, prior, truncation, loop)
