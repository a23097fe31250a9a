"""Seed -> latent z: the one definition every backend shares.

This file is numpy-only and imports nothing from gantool, so the Triton python model can ship
this very file next to its ``model.py``.

Contract:
- Row i of z depends on ``seeds[i]`` alone: it is drawn from its own
  ``numpy.random.Generator(numpy.random.PCG64(seed))``, never from a shared stream.
- ``prior="normal"``: z ~ N(0, 1). ``prior="uniform"``: z ~ U(-1, 1) (the Marchesi paper's prior).
- ``truncation`` t is the largest |z| allowed, for both priors. Uniform: z ~ U(-t, t), 0 < t <= 1.
  Normal (the truncation trick): entries with |z| > t are redrawn, in index order, from the same
  per-seed generator until none is left. ``None`` means the plain prior.
- Values are drawn in float64 and returned as float32.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PRIORS = ("normal", "uniform")
MAX_SEED = 2**63 - 1


def validate_truncation(truncation: float | None, prior: str) -> None:
    """Raise ValueError when ``truncation`` is not allowed for ``prior``."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
    if truncation is None:
        return
    if not np.isfinite(truncation) or truncation <= 0:
        raise ValueError(f"truncation must be a positive number, got {truncation}")
    if prior == "uniform" and truncation > 1:
        raise ValueError(
            f"truncation {truncation} is above the uniform prior's bound 1; use a value in (0, 1]"
        )


def latent_row(seed: int, nz: int, prior: str = "normal", truncation: float | None = None):
    """z for one seed: float32 array of shape (nz,)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} is outside 0..{MAX_SEED}")
    rng = np.random.Generator(np.random.PCG64(seed))
    if prior == "uniform":
        bound = 1.0 if truncation is None else float(truncation)
        return rng.uniform(-bound, bound, nz).astype(np.float32)
    z = rng.standard_normal(nz)
    if truncation is not None:
        outside = np.abs(z) > truncation
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(z) > truncation
    return z.astype(np.float32)


def latents(
    seeds: Sequence[int], nz: int, prior: str = "normal", truncation: float | None = None
) -> np.ndarray:
    """z for a batch of seeds: float32 array of shape (len(seeds), nz)."""
    validate_truncation(truncation, prior)
    z = np.empty((len(seeds), nz), dtype=np.float32)
    for i, seed in enumerate(seeds):
        z[i] = latent_row(int(seed), nz, prior, truncation)
    return z


def parse_seeds(spec: str) -> list[int]:
    """Parse a seed list such as ``"0-63,100,200-203"`` (ranges inclusive) into a list of ints."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            raise ValueError(f"empty item in seed list {spec!r}; write e.g. 0-63,100")
        lo, sep, hi = part.partition("-")
        try:
            start = int(lo)
            stop = int(hi) if sep else start
        except ValueError:
            raise ValueError(
                f"bad seed item {part!r} in {spec!r}; write non-negative integers or ranges "
                "like 0-63"
            ) from None
        if stop < start:
            raise ValueError(f"seed range {part!r} runs backwards; write it as {stop}-{start}")
        if stop > MAX_SEED:
            raise ValueError(f"seed {stop} is above the largest seed {MAX_SEED}")
        seeds.extend(range(start, stop + 1))
    return seeds


def batched(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    """Consecutive chunks of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
