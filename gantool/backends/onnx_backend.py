"""ONNX Runtime backend: an exported model (file or export folder) on CPU or CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gantool.artifacts import check_finished, check_unchanged, digest, onnx_name
from gantool.backends.base import ExportedGenerator, model_prior
from gantool.errors import GantoolError, OptionError
from gantool.model_info import graph_inputs, read_onnx_metadata


def onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise GantoolError("the onnx backend needs ONNX Runtime: pip install 'gantool[onnx]' "
                           "(or 'gantool[gpu]' for CUDA)") from None
    return ort


class OnnxGenerator(ExportedGenerator):
    """``path``: a .onnx file, or an export folder (its model.onnx, or model_fp16.onnx with
    ``fp16``). ``device`` auto takes CUDA when ONNX Runtime has it."""

    def __init__(self, path: str, device: str = "auto", prior: str | None = None,
                 fp16: bool = False, threads: int = 0, **_):
        ort = onnxruntime()
        p = Path(path)
        if p.is_dir():
            p = p / onnx_name(fp16)
        if not p.is_file():
            raise GantoolError(f"{p} does not exist; export one with gantool export")
        check_finished(p)
        check_unchanged(p)
        info = read_onnx_metadata(p)
        self.path, self.info = p, info
        self.resolution, self.channels, self.nz = info.resolution, info.channels, info.nz
        self.prior, self.default_truncation = model_prior(prior, info.prior), info.truncation
        self.classes = info.classes
        self.weights_sha256 = info.weights_sha256 or digest(p)["sha256"]
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "cuda" and not cuda:
            raise OptionError("device", "cuda: this ONNX Runtime has no CUDA provider; "
                              "pip install 'gantool[gpu]'")
        providers = (["CUDAExecutionProvider"] if cuda and device != "cpu" else []) + [
            "CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(p), options, providers=providers)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's own errors: a damaged graph
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GantoolError(f"ONNX Runtime cannot load {p}: {first}") from None
        z_dims = self.session.get_inputs()[0].shape
        if z_dims[-1] != info.nz:
            raise GantoolError(f"{p}: its metadata says nz {info.nz} but its graph takes "
                               f"{z_dims[-1]} latent values; export it again")

    def run(self, z: np.ndarray, c: np.ndarray | None = None,
            psi: np.ndarray | None = None) -> np.ndarray:
        return self.session.run(None, graph_inputs(z, c, psi))[0]
