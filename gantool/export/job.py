"""What every format's builder gets and shares: the options of ``gantool export``, the export
job (the folder to write into, the generator and its images on the verification seeds, the
result so far), and the verification step each artifact passes before it is written.

Light to import (numpy): the formats table imports the builders, and ``gantool.cli.choices``
imports the table's package at every command's start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gantool.config import ModelConfig
from gantool.errors import OptionError, literal
from gantool.export.verify import Check
from gantool.model_info import ModelInfo, graph_inputs

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ExportOptions:
    """What ``gantool export`` can be asked; a format's own options are listed in its row."""

    fp16: bool = False  # also model_fp16.onnx; an FP16 engine
    output: str = "uint8"  # uint8 (B,H,W,C) images, or the float (B,C,H,W) tensor
    batch: tuple[int, int, int] = (1, 8, 64)  # min, opt, max: engine profile, Triton batching
    keep_fp32: tuple[str, ...] = ()  # ONNX nodes kept in float32 with fp16
    verify: bool = True  # every artifact against PyTorch on fixed seeds
    ema: bool = True  # the EMA weights if the checkpoint has them
    fidelity: int = 0  # KID/FID seeds between PyTorch's and the FP16 model's images
    workspace_gb: float = 4.0
    triton_variant: str = "cpu"
    triton_instances: int = 1
    triton_accelerator: str = "none"


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    fidelity: dict | None = None  # KID/FID between PyTorch's and the FP16 model's images


@dataclass
class ExportJob:
    """What each builder gets: the folder to write into, the options, the generator with its
    images on the verification seeds, the result so far, and the ONNX models once built.
    ``log`` takes a line that names options as ``{name}``, as ``OptionError`` messages do."""

    out: Path
    options: ExportOptions
    generator: torch.nn.Module
    model: ModelConfig
    info: ModelInfo  # what the exported files say about the model
    z: np.ndarray
    c: np.ndarray | None
    psi: np.ndarray | None  # the truncation input of a network that applies it
    reference: np.ndarray  # the generator's float (B, C, H, W) output for z (and c, psi)
    log: Callable[[str], None]
    result: ExportResult = field(default_factory=ExportResult)
    onnx: Any = None  # the float32 ONNX model
    onnx_fp16: Any = None


def verified(check: Check, log) -> Check:
    """``check`` logged; an error (naming options as ``{name}``, as its problems do) when it
    failed: the artifact is not written."""
    log(check.summary())
    if not check.ok:
        raise OptionError(None, f"{literal(check.artifact)} failed verification against "
                          f"PyTorch: {'; '.join(check.problems)} (nothing was written for it)")
    return check


def run_graph(model, z: np.ndarray, c: np.ndarray | None, psi: np.ndarray | None) -> np.ndarray:
    """An ONNX model (in memory) on the CPU with ONNX Runtime: its output for z (and c, psi)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, graph_inputs(z, c, psi))[0]


def tensors(*inputs: np.ndarray | None) -> tuple[torch.Tensor | None, ...]:
    """The generator's inputs (z, c, psi) as tensors, None where absent."""
    import torch

    return tuple(None if a is None else torch.from_numpy(a) for a in inputs)
