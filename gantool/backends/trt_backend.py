"""TensorRT backend: a bare plan (``model.plan`` and its ``.plan.json`` sidecar, written by
``gantool export --formats engine``) run with ``execute_async_v3`` on torch CUDA tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gantool.artifacts import PLAN, check_finished, check_unchanged, digest, plan_sidecar
from gantool.backends.base import ExportedGenerator, model_prior
from gantool.errors import GantoolError, OptionError, literal
from gantool.model_info import graph_inputs, read_plan_sidecar

INSTALL_HINT = ("TensorRT engines are built on a machine with an NVIDIA GPU and TensorRT: "
                "pip install 'gantool[tensorrt]' there, or build from model_fp16.onnx with "
                "deploy/build_engine.sh (trtexec in NVIDIA's TensorRT container)")


def require_tensorrt():
    """The tensorrt module, or a GantoolError saying what to install and where."""
    try:
        import tensorrt as trt
    except ImportError:
        raise GantoolError(f"TensorRT is not installed. {INSTALL_HINT}") from None
    import torch

    if not torch.cuda.is_available():
        raise GantoolError(f"TensorRT needs a CUDA GPU and none is visible. {INSTALL_HINT}")
    return trt


class EngineRunner:
    """Runs a plan with ``execute_async_v3`` on torch CUDA tensors; ``meta`` is the model's
    metadata from the sidecar."""

    def __init__(self, path: str | Path):
        import torch

        self.trt, self.torch = require_tensorrt(), torch
        plan = Path(path) / PLAN if Path(path).is_dir() else Path(path)
        sidecar = plan_sidecar(plan)
        if not plan.is_file() or not sidecar.is_file():
            raise OptionError(None, f"{literal(plan)} and its {literal(sidecar.name)} are "
                              "needed; export with gantool export {formats} engine")
        check_finished(plan)
        check_unchanged(plan)
        self.plan = plan
        self.info = read_plan_sidecar(sidecar)[0]
        logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.engine = self.trt.Runtime(logger).deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise GantoolError(f"TensorRT cannot load {plan}: built for another GPU or "
                               "TensorRT version? Rebuild it on this machine")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def run(self, z: np.ndarray, c: np.ndarray | None = None,
            psi: np.ndarray | None = None) -> np.ndarray:
        """The engine's output for z (B, nz) (and one-hot classes c (B, K) of a conditional
        model, psi (B, 1) of a truncating network): uint8 (B, H, W, C) or float (B, C, H, W)."""
        torch, trt = self.torch, self.trt
        inputs = {name: torch.from_numpy(a).cuda()
                  for name, a in graph_inputs(z, c, psi).items()}
        for name, t in inputs.items():
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        shape = tuple(self.context.get_tensor_shape("image"))
        dtype = {trt.uint8: torch.uint8, trt.float32: torch.float32,
                 trt.float16: torch.float16}[self.engine.get_tensor_dtype("image")]
        out = torch.empty(shape, dtype=dtype, device="cuda")
        self.context.set_tensor_address("image", out.data_ptr())
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise GantoolError("TensorRT execution failed")
        self.stream.synchronize()
        return out.cpu().numpy()


class TensorRTGenerator(ExportedGenerator):
    """The Generator protocol over ``EngineRunner``."""

    def __init__(self, path: str, prior: str | None = None, **_):
        self.runner = EngineRunner(path)
        info = self.runner.info
        self.resolution, self.channels, self.nz = info.resolution, info.channels, info.nz
        self.prior, self.default_truncation = model_prior(prior, info.prior), info.truncation
        self.classes = info.classes
        self.weights_sha256 = info.weights_sha256 or digest(self.runner.plan)["sha256"]

    def run(self, z: np.ndarray, c: np.ndarray | None = None,
            psi: np.ndarray | None = None) -> np.ndarray:
        return self.runner.run(z, c, psi)
