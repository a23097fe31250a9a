"""A generator without a network, for testing the output stage at megapixel sizes.

``PatternGenerator`` has the Generator protocol of ``gantool.backends``: seed s always draws the
same image (a colour gradient shifted by the seed, with a seed-dependent block of noise), at a
cost far below any real network's, so a test can push thousands of 512-1024 px images through
the real encoders, writer processes and files.
"""

from __future__ import annotations

import numpy as np


class PatternGenerator:
    nz, prior, default_truncation = 8, "normal", None

    def __init__(self, resolution: int = 64, channels: int = 3, delay: float = 0.0):
        self.resolution, self.channels, self.delay = resolution, channels, delay
        x, y = np.meshgrid(np.linspace(0, 255, resolution, dtype=np.float32),
                           np.linspace(0, 255, resolution, dtype=np.float32))
        base = np.stack([x, y, 255 - (x + y) / 2, np.full_like(x, 128)])
        self.base = base[:channels].transpose(1, 2, 0).astype(np.uint8)

    def image(self, seed: int) -> np.ndarray:
        img = np.roll(self.base, seed % self.resolution, axis=1).copy()
        n = max(1, self.resolution // 8)
        rng = np.random.default_rng(seed)
        img[:n, :n] = rng.integers(0, 256, (n, n, self.channels), dtype=np.uint8)
        return img

    def generate(self, seeds, truncation) -> np.ndarray:
        if self.delay:
            import time

            time.sleep(self.delay)
        return np.stack([self.image(int(s)) for s in seeds]) if len(seeds) else np.zeros(
            (0, self.resolution, self.resolution, self.channels), np.uint8)
