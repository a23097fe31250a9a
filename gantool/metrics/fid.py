"""FID and KID with streamed statistics and a cache for the real data's.

FID (Heusel et al. 2017): ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of the Inception
pool features' means and covariances. The statistics are accumulated batch by batch (count, sum,
sum of outer products in float64), so memory does not grow with the number of images.

KID (Binkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets. It needs features, not just moments, so
``FeatureStats`` also keeps a uniform random sample of at most ``KID_KEEP`` of them (reservoir
sampling): 10,000 x 2048 float32 = 80 MB, whatever the number of images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gantool.fileio import atomic_write

KID_KEEP = 10_000
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


class FeatureStats:
    """Streaming mean/covariance of feature rows, plus a bounded random sample of the rows."""

    def __init__(self, dim: int, keep: int = KID_KEEP, seed: int = 0):
        self.n = 0
        self.sum = np.zeros(dim)
        self.outer = np.zeros((dim, dim))
        self._sample = np.empty((keep, dim), np.float32)
        self._rng = np.random.default_rng(seed)

    def add(self, feats: np.ndarray) -> None:
        feats = np.asarray(feats, np.float64)
        self.sum += feats.sum(0)
        self.outer += feats.T @ feats
        keep = len(self._sample)
        for row in feats:  # reservoir sampling (Vitter's algorithm R): a uniform sample
            j = self.n if self.n < keep else self._rng.integers(0, self.n + 1)
            if j < keep:
                self._sample[j] = row
            self.n += 1

    @property
    def sample(self) -> np.ndarray:
        return self._sample[: min(self.n, len(self._sample))]

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.n

    @property
    def cov(self) -> np.ndarray:
        mu = self.mean
        return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            np.savez(f, n=self.n, sum=self.sum, outer=self.outer, sample=self.sample)

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        data = np.load(path)
        sample = data["sample"]
        stats = cls(data["sum"].shape[0], keep=max(len(sample), 1))
        stats.n, stats.sum, stats.outer = int(data["n"]), data["sum"], data["outer"]
        stats._sample[: len(sample)] = sample
        return stats


def fid(a: FeatureStats, b: FeatureStats) -> float:
    """Frechet distance of the two feature Gaussians.

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2) (which has the same eigenvalues as S_a S_b):
    two symmetric eigendecompositions, several times faster than a general matrix square root
    at 2048 dimensions and free of its complex round-off.
    """
    diff = a.mean - b.mean
    w, v = np.linalg.eigh(a.cov)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(root_a @ b.cov @ root_a)
    tr_covmean = np.sqrt(np.clip(ev, 0, None)).sum()
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * tr_covmean)


def kid(a: np.ndarray, b: np.ndarray, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float | None]:
    """Unbiased KID of feature rows ``a`` and ``b``: (mean, std) over ``subsets`` subsets.

    Where neither set is larger than a subset, every subset would be both whole sets: KID is
    computed once, on them, and its spread is unknown (None), not the 0 that repeating the same
    computation would give."""
    rng = np.random.default_rng(seed)
    m = min(len(a), len(b), subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 images per set")
    whole = len(a) == len(b) == m
    d = a.shape[1]
    values = []
    for _ in range(1 if whole else subsets):
        x = (a if whole else a[rng.choice(len(a), m, replace=False)]).astype(np.float64)
        y = (b if whole else b[rng.choice(len(b), m, replace=False)]).astype(np.float64)
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        off = m * (m - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                      - 2 * kxy.mean())
    return float(np.mean(values)), (None if whole else float(np.std(values)))


def kid_text(value: float, std: float | None, n: int, digits: str = ".5f",
             std_digits: str | None = None) -> str:
    """KID with its spread over subsets ("0.01234 +- 0.00056"), or, where ``kid`` had one
    subset (``std`` None: both sets of ``n`` images whole), that it has none."""
    if std is None:
        return f"{value:{digits}} (one subset of {n:,}, the whole sets: no spread)"
    return f"{value:{digits}} +- {std:{std_digits or digits}}"


def collect(batches: Iterable[np.ndarray], extract: Callable[[np.ndarray], np.ndarray],
            keep: int = KID_KEEP, on_batch: Callable[[int], None] = lambda n: None
            ) -> FeatureStats:
    """Features of every uint8 image batch (B, H, W, C), streamed into FeatureStats."""
    stats = None
    for images in batches:
        feats = extract(images)
        if stats is None:
            stats = FeatureStats(feats.shape[1], keep)
        stats.add(feats)
        on_batch(len(images))
    if stats is None or stats.n < 2:
        raise ValueError("FID/KID need at least 2 images")
    return stats


@dataclass(frozen=True)
class CacheKey:
    """Real statistics are reused when the images (by content), the extractor and the number of
    images are the same."""

    images_sha256: str
    extractor: str
    n: int

    def path(self, root: Path) -> Path:
        return root / f"real-{self.images_sha256[:24]}-{self.extractor}-{self.n}.npz"


def images_sha256(images: np.ndarray) -> str:
    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def cache_dir() -> Path:
    """``$GANTOOL_CACHE`` or ``~/.cache/gantool``, then ``stats/``."""
    root = os.environ.get("GANTOOL_CACHE") or Path.home() / ".cache" / "gantool"
    return Path(root) / "stats"
