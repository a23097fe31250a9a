"""TensorRT backend: a bare plan run with ``execute_async_v3`` on torch CUDA tensors."""

from __future__ import annotations

import numpy as np

from gantool.backends import ExportedGenerator
from gantool.export.tensorrt import EngineRunner


class TensorRTGenerator(ExportedGenerator):
    """The Generator protocol over ``gantool.export.tensorrt.EngineRunner``."""

    def __init__(self, path: str, prior: str | None = None, **_):
        self.runner = EngineRunner(path)
        info = self.runner.info
        self.resolution, self.channels, self.nz = info.resolution, info.channels, info.nz
        self.prior, self.default_truncation = prior or info.prior, info.truncation
        self.classes = info.classes

    def run(self, z: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        return self.runner.run(z, c)
