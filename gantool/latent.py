"""Seed -> latent z: the one definition every backend shares.

This file is numpy-only and imports nothing from gantool, so the Triton python model can ship
this very file next to its ``model.py``.

Contract:
- Row i of z depends on ``seeds[i]`` alone: it is drawn from its own
  ``numpy.random.Generator(numpy.random.PCG64(seed))``, never from a shared stream.
- ``prior="normal"``: z ~ N(0, 1). ``prior="uniform"``: z ~ U(-1, 1) (the Marchesi paper's prior).
- ``truncation`` t is the largest |z| allowed, for both priors. Uniform: z ~ U(-t, t), 0 < t <= 1.
  Normal (the truncation trick): entries with |z| > t are redrawn, in index order, from the same
  per-seed generator until none is left; t >= ``MIN_NORMAL_TRUNCATION``, because the expected
  number of draws grows like 1/t (about 125 per value at the minimum, a few milliseconds a seed)
  and one request at t = 1e-9 would never finish. ``None`` means the plain prior.
- ``prior="stylegan"``: z ~ N(0, 1) drawn as NVIDIA's StyleGAN tools draw it,
  ``numpy.random.RandomState(seed).randn(nz)`` (seeds 0..2**32-1), for imported StyleGAN
  generators. Its truncation is psi, applied by the network in w space (w_avg + psi (w - w_avg)):
  z is never truncated, the network takes psi as an input (``truncation_input``), None is psi 1
  (no truncation), 0 the average image, and any finite value is allowed.
- Values are drawn in float64 and returned as float32.
- A conditional model's second input is the class, one-hot (``class_vectors``): class c of K is
  row c of the K x K identity in float32. Drawn without a class, seed s gets class s mod K.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice

import numpy as np

PRIORS = ("normal", "uniform", "stylegan")
NETWORK_TRUNCATION = ("stylegan",)  # priors whose truncation (psi) the network applies
MAX_SEED = 2**63 - 1
MAX_RANDOMSTATE_SEED = 2**32 - 1  # numpy's RandomState takes 32-bit seeds
MIN_NORMAL_TRUNCATION = 0.01  # every z is within 1% of the prior's mode: one image for all seeds


def validate_truncation(truncation: float | None, prior: str) -> None:
    """Raise ValueError when ``truncation`` is not allowed for ``prior``."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
    if truncation is None:
        return
    if prior in NETWORK_TRUNCATION:
        if not np.isfinite(truncation):
            raise ValueError(f"truncation psi must be a finite number, got {truncation}")
        return
    if not np.isfinite(truncation) or truncation <= 0:
        raise ValueError(f"truncation must be a positive number, got {truncation}")
    if prior == "uniform" and truncation > 1:
        raise ValueError(
            f"truncation {truncation} is above the uniform prior's bound 1; use a value in (0, 1]"
        )
    # the minimum as float32 too: a server receives 0.01 as float32 0.0099999998
    if prior == "normal" and truncation < np.float32(MIN_NORMAL_TRUNCATION):
        raise ValueError(
            f"truncation {truncation:g} is below the normal prior's minimum "
            f"{MIN_NORMAL_TRUNCATION:g} (smaller values cost ever more redraws and give the same "
            "image for every seed); use a value of at least that"
        )


def asked_truncation(asked: float | None, default: float | None) -> float | None:
    """The truncation to draw with: ``default`` (the model's) when none was asked for; inf asked
    (``--truncation none``) is the plain prior, None."""
    if asked is None:
        return default
    return None if asked == float("inf") else asked


def class_vectors(seeds: Sequence[int], classes: Sequence[int] | None, k: int) -> np.ndarray:
    """The class input of a conditional model for ``seeds``: (B, k) one-hot float32 rows of
    ``classes`` (one index per seed), or of seed mod k when ``classes`` is None."""
    index = np.asarray([s % k for s in seeds] if classes is None else classes, dtype=np.int64)
    if index.shape != (len(seeds),):
        raise ValueError(f"{len(seeds)} seeds but {index.size} classes; give one class per seed")
    if index.size and not (0 <= index.min() and index.max() < k):
        raise ValueError(f"class {int(index.max() if index.max() >= k else index.min())} is "
                         f"outside 0..{k - 1}")
    return np.eye(k, dtype=np.float32)[index]


def latent_row(seed: int, nz: int, prior: str = "normal", truncation: float | None = None):
    """z for one seed: float32 array of shape (nz,)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} is outside 0..{MAX_SEED}")
    if prior == "stylegan":
        if seed > MAX_RANDOMSTATE_SEED:
            raise ValueError(f"seed {seed} is above {MAX_RANDOMSTATE_SEED}, the largest seed of "
                             "the stylegan prior (numpy's RandomState, as NVIDIA's tools draw)")
        return np.random.RandomState(seed).randn(nz).astype(np.float32)
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


def plain_truncation(prior: str) -> float:
    """The truncation number that means none, for an interface that always takes a number (a
    Triton request): the uniform prior's bound 1, psi 1, or float32's largest value for the
    normal prior (no value of z is ever redrawn)."""
    if prior == "uniform" or prior in NETWORK_TRUNCATION:
        return 1.0
    return float(np.finfo(np.float32).max)


def max_seed(prior: str) -> int:
    """The largest seed ``prior`` draws."""
    return MAX_RANDOMSTATE_SEED if prior == "stylegan" else MAX_SEED


def check_seeds(seeds: Sequence[int], prior: str) -> None:
    """A ValueError, before anything is drawn, for a seed list that ``prior`` cannot draw in
    full (the stylegan prior's seeds stop at 2**32 - 1)."""
    if prior != "stylegan" or not len(seeds):
        return
    top = (max(r[-1] for r in seeds.ranges if len(r)) if isinstance(seeds, Seeds)
           else max(seeds))
    if top > MAX_RANDOMSTATE_SEED:
        raise ValueError(f"seed {top} is above {MAX_RANDOMSTATE_SEED}, the largest seed of the "
                         "stylegan prior (numpy's RandomState, as NVIDIA's tools draw)")


def truncation_input(truncation: float | None, prior: str, count: int) -> np.ndarray | None:
    """The network's truncation input for ``count`` images: (count, 1) float32 psi for a prior
    whose network applies the truncation (psi 1 for None), None for the others (their z carries
    it)."""
    if prior not in NETWORK_TRUNCATION:
        return None
    return np.full((count, 1), 1.0 if truncation is None else truncation, dtype=np.float32)


class Seeds(Sequence[int]):
    """A parsed seed list, held as its ranges: ``0-99999999999`` costs a few bytes, and its seeds
    are produced only as they are drawn."""

    def __init__(self, ranges: Iterable[range]):
        self.ranges = tuple(ranges)
        self._len = sum(r.stop - r.start for r in self.ranges)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        return chain.from_iterable(self.ranges)

    def __contains__(self, seed: object) -> bool:
        return any(seed in r for r in self.ranges)

    def count(self, seed: object) -> int:
        return sum(seed in r for r in self.ranges)

    def __getitem__(self, index):
        if isinstance(index, slice):  # each range sliced as a range: no walk to the start
            start, stop, step = index.indices(self._len)
            if step != 1:
                raise ValueError("a seed list slices with step 1 only")
            out: list[int] = []
            for r in self.ranges:
                if stop <= 0:
                    break
                out.extend(r[max(start, 0) : stop])
                start, stop = start - len(r), stop - len(r)
            return out
        if index < 0:
            index += self._len
        for r in self.ranges:
            if 0 <= index < len(r):
                return r[index]
            index -= len(r)
        raise IndexError("seed index out of range")

    def part(self, index: int, count: int) -> Seeds:
        """Block ``index`` of ``count`` near-equal contiguous blocks of the list (its seeds
        ``index * len // count`` up to ``(index + 1) * len // count``), lazily: the blocks are
        disjoint, cover the list and depend on the list and ``count`` alone."""
        start, stop = index * self._len // count, (index + 1) * self._len // count
        ranges = []
        for r in self.ranges:
            if stop > 0 and start < len(r):
                ranges.append(r[max(start, 0) : stop])
            start, stop = start - len(r), stop - len(r)
        return Seeds(ranges)

    def __str__(self) -> str:
        """The list as ``parse_seeds`` reads it, e.g. ``0-63,100``."""
        return ",".join(f"{r.start}" if len(r) == 1 else f"{r.start}-{r.stop - 1}"
                        for r in self.ranges)

    def __repr__(self) -> str:
        return f"Seeds({self})"


def parse_seeds(spec: str) -> Seeds:
    """Parse a seed list such as ``"0-63,100,200-203"`` (ranges inclusive), lazily."""
    ranges: list[range] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            raise ValueError(f"empty item in seed list {spec!r}; write e.g. 0-63,100")
        lo, sep, hi = part.partition("-")
        try:
            if not part.isascii():  # int() reads other scripts' digits; the CLI's numbers do not
                raise ValueError
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
        ranges.append(range(start, stop + 1))
    seeds = Seeds(ranges)
    if len(ranges) > 10_000 or seeds._len > MAX_SEED:
        raise ValueError(f"seed list {spec[:40]!r}... is too long: write it as at most 10,000 "
                         f"items (ranges count as one) of at most {MAX_SEED} seeds in all")
    return seeds


def batched(items: Iterable[int], size: int) -> Iterator[list[int]]:
    """Consecutive chunks of at most ``size`` items, taken lazily from any iterable."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
