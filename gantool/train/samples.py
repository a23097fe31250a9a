"""What a run draws from itself while it trains: sample grids, and the sample diversity the
log and the divergence guard watch. Both draw G_ema (or G) in eval mode, by the latent
contract, as a user will draw the checkpoint."""

from __future__ import annotations

import numpy as np
import torch

from gantool.latent import batched, class_vectors, latents
from gantool.metrics.diversity import diversity, nearest_distance
from gantool.sampling.images import to_uint8_tensor

DIVERSITY_SEEDS = 64  # seeds 0..63: the sample diversity the log and the guard watch


class NetworkGenerator:
    """The Generator protocol over a network being trained: eval mode while it draws."""

    def __init__(self, net: torch.nn.Module, nz: int, prior: str, device: torch.device,
                 classes: int = 0):
        self.net, self.nz, self.prior, self.device = net, nz, prior, device
        self.k = classes

    @torch.no_grad()
    def generate(self, seeds, truncation, classes=None) -> np.ndarray:
        seeds = list(seeds)
        z = torch.from_numpy(latents(seeds, self.nz, self.prior, truncation)).to(self.device)
        c = (torch.from_numpy(class_vectors(seeds, classes, self.k)).to(self.device)
             if self.k else None)
        was_training = self.net.training
        self.net.eval()
        try:
            return to_uint8_tensor(self.net(z, c)).cpu().numpy()
        finally:
            self.net.train(was_training)


def sample_diversity(gen: NetworkGenerator, truncation: float | None, batch: int,
                     real_distance: float) -> float:
    """``gantool.metrics.diversity`` of seeds 0..63, drawn ``batch`` at a time."""
    images = np.concatenate([gen.generate(chunk, truncation) for chunk in
                             batched(range(DIVERSITY_SEEDS), batch)])
    return diversity(images, real_distance)


def real_distance(images: np.ndarray) -> float | None:
    """Nearest-neighbour distance within a fixed subset of the real images (N, C, R, R): what
    sample diversity is measured against; None for a dataset of one image."""
    if len(images) < 2:
        return None
    pick = np.random.default_rng(0).permutation(len(images))[:DIVERSITY_SEEDS]
    return nearest_distance(images[np.sort(pick)], channels_last=False) or None


AUTO_GRIDS_S = (120, 240, 480, 960, 1920)  # sample_every=auto: minutes 2..32 of a session,
AUTO_GRIDS_THEN_S = 1800  # then every 30 minutes


class GridClock:
    """When a sample grid is due, by ``train.sample_every``: every N steps (0: each epoch of
    ``steps_per_epoch``), every T seconds of this session, or auto (``AUTO_GRIDS_S``, then every
    ``AUTO_GRIDS_THEN_S``): early grids on a slow machine, few on a long fast run. Time counts
    from ``start`` (a ``time.perf_counter()`` value); the first step's grid and the last are
    the trainer's, not this clock's."""

    def __init__(self, cadence: tuple[str, float], steps_per_epoch: int, start: float):
        self.kind, value = cadence
        self.every = (int(value) or steps_per_epoch) if self.kind == "steps" else value
        self.start = start
        self.next_at = start + (AUTO_GRIDS_S[0] if self.kind == "auto" else value)

    @property
    def by_time(self) -> bool:
        return self.kind != "steps"

    def due(self, step: int, now: float) -> bool:
        """Whether a grid is due after ``step`` at ``now``."""
        return now >= self.next_at if self.by_time else step % self.every == 0

    def wrote(self, now: float) -> None:
        """A grid was written at ``now``: the next is due at the first time past it."""
        while self.by_time and self.next_at <= now:
            self.next_at = self._after(self.next_at)

    def _after(self, at: float) -> float:
        if self.kind == "time":
            return at + self.every
        elapsed = at - self.start
        later = [s for s in AUTO_GRIDS_S if s > elapsed + 1e-6]
        return self.start + (later[0] if later else elapsed + AUTO_GRIDS_THEN_S)
