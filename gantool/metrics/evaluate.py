"""`gantool eval`: FID/KID of a generator against a dataset, real statistics cached."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from gantool.config import EVAL_METRICS
from gantool.latent import batched
from gantool.metrics.fid import (
    CacheKey,
    FeatureStats,
    cache_dir,
    collect,
    fid,
    images_sha256,
    kid,
)
from gantool.metrics.inception import InceptionFeatures, extractor_id

METRICS = EVAL_METRICS  # what gantool eval and train.eval_metric accept


def real_stats(images: np.ndarray, extract: InceptionFeatures, batch_size: int,
               on_batch: Callable[[int], None] = lambda n: None) -> tuple[FeatureStats, bool]:
    """Statistics of real uint8 images (N, C, R, R): from the cache when these very images
    were measured before -> (stats, came_from_cache)."""
    key = CacheKey(images_sha256(images), extractor_id(), len(images))
    path = key.path(cache_dir())
    if path.is_file():
        return FeatureStats.load(path), True
    nhwc = images.transpose(0, 2, 3, 1)
    stats = collect((nhwc[i : i + batch_size] for i in range(0, len(nhwc), batch_size)),
                    extract, on_batch=on_batch)
    stats.save(path)
    return stats, False


def class_mix(num: int, counts: Sequence[int]) -> list[int] | None:
    """The classes of seeds 0..num-1 in the proportions of ``counts`` (images per class in the
    training data), each class's share rounded the same way every time; None (seed s draws
    class s mod K: uniform) without counts."""
    if not counts or sum(counts) < 1:
        return None
    edges = np.cumsum(np.asarray(counts, dtype=np.float64)) / sum(counts)
    return np.searchsorted(edges, (np.arange(num) + 0.5) / num, side="right").tolist()


def score_generator(generator, images: np.ndarray, metrics: list[str], num: int,
                    batch_size: int = 32, truncation: float | None = None, device: str = "cpu",
                    on_batch: Callable[[int], None] = lambda n: None,
                    extract: InceptionFeatures | None = None,
                    classes: Sequence[int] | None = None) -> dict:
    """FID and/or KID of ``num`` generated images (seeds 0..num-1 at ``truncation``; of a
    conditional model, seed s of class ``classes[s]``, by default s mod K) against ``num`` real
    ones (a fixed random subset of ``images`` when there are more)."""
    if len(images) > num:
        pick = np.sort(np.random.default_rng(0).choice(len(images), num, replace=False))
        images = images[pick]
    extract = extract or InceptionFeatures(device)
    t0 = time.perf_counter()
    real, cached = real_stats(images, extract, batch_size, on_batch)
    fake = collect((generator.generate(chunk, truncation) if classes is None else
                    generator.generate(chunk, truncation, [classes[s] for s in chunk])
                    for chunk in batched(list(range(num)), batch_size)), extract,
                   on_batch=on_batch)
    seconds = time.perf_counter() - t0
    measured = fake.n + (0 if cached else real.n)
    out = {"num_real": real.n, "num_fake": fake.n, "real_cached": cached,
           "images_per_s": measured / seconds, "truncation": truncation}
    if "fid" in metrics:
        out["fid"] = fid(real, fake)
    if "kid" in metrics:
        size = min(len(real.sample), len(fake.sample), 1000)
        out["kid"], out["kid_std"] = kid(real.sample, fake.sample, subset_size=size)
    return out


def score_per_class(per_class: list, images: np.ndarray, labels: np.ndarray,
                    names: tuple[str, ...], metrics: list[str], num: int,
                    batch_size: int = 32, truncation: float | None = None,
                    device: str = "cpu",
                    on_batch: Callable[[int], None] = lambda n: None) -> dict[str, dict]:
    """``score_generator`` once per class: ``per_class[i]`` (a generator drawing class i, e.g.
    ``gantool.backends.FixedClass``) against the real images labelled i (``labels`` index
    ``names``), ``num`` of each; class name -> results. Fewer images per class make FID larger
    (it is biased upwards at small n): compare classes with one another, not with the overall
    figure."""
    extract = InceptionFeatures(device)
    return {name: score_generator(gen, images[labels == i], metrics, num, batch_size,
                                  truncation, device, on_batch, extract)
            for i, (name, gen) in enumerate(zip(names, per_class))}
