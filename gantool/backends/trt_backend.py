"""TensorRT backend: a bare plan run with ``execute_async_v3`` on torch CUDA tensors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gantool.backends import check_class_input, class_input
from gantool.export.tensorrt import EngineRunner
from gantool.sampling.images import to_uint8
from gantool.sampling.latent import latents


class TensorRTGenerator:
    """The Generator protocol over ``gantool.export.tensorrt.EngineRunner``."""

    def __init__(self, path: str, prior: str | None = None, **_):
        self.runner = EngineRunner(path)
        info = self.runner.info
        self.resolution, self.channels, self.nz = info.resolution, info.channels, info.nz
        self.prior, self.default_truncation = prior or info.prior, info.truncation
        self.classes = info.classes

    def generate(self, seeds: Sequence[int], truncation: float | None,
                 classes: Sequence[int] | None = None) -> np.ndarray:
        return self.generate_z(latents(seeds, self.nz, self.prior, truncation),
                               class_input(self.classes, seeds, classes))

    def generate_z(self, z: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        check_class_input(self.classes, c)
        out = self.runner.run(z, c)
        return out if out.dtype == np.uint8 else to_uint8(out.astype(np.float32))
