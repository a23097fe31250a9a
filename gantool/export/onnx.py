"""Generator -> ONNX: dynamic batch, one file, metadata that describes the model.

Input ``z`` (B, nz) float32, and for a conditional model ``class`` (B, K) float32 one-hot rows
(a float input: no OneHot or integer Gather for older TensorRT parsers to refuse). Output
``image``: uint8 (B, H, W, C) computed inside the graph (the default, so no serving stack
converts floats), or the raw float (B, C, H, W) in [-1, 1]. The uint8 arithmetic is
``gantool.sampling.images.to_uint8``'s: round-half-even of (x + 1) * 127.5, clamped to [0, 255].
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

import gantool
from gantool.errors import GantoolError
from gantool.fileio import atomic_write
from gantool.model_info import (  # noqa: F401 - OUTPUTS: its choices
    CLASS_INPUT,
    OUTPUTS,
    PREFIX,
    ModelInfo,
)
from gantool.sampling.images import to_uint8_tensor

OPSET = 18
MAX_BATCH = 65_536
KEEP_NODE_METADATA = ("pkg.torch.onnx.name_scopes",)  # module paths, for overflow reports


class UInt8Images(nn.Module):
    """z (B, nz) -> uint8 (B, H, W, C): the generator plus to_uint8 as graph operations."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        out = self.generator(z) if c is None else self.generator(z, c)
        return to_uint8_tensor(out)  # from (B, C, H, W) in [-1, 1]


def export_onnx(generator: nn.Module, info: ModelInfo):
    """``generator`` (eval mode) as an onnx.ModelProto with ``info`` as its metadata (not yet
    saved: see ``save_model``); ``info.output`` says what the graph returns."""
    output = info.output
    if output not in OUTPUTS:
        raise GantoolError(f"unknown output {output!r}; choose {' or '.join(OUTPUTS)}")
    net = (UInt8Images(generator) if output == "uint8" else generator).eval()
    args, names = (torch.zeros(2, info.nz),), ["z"]
    if info.classes:
        args, names = (*args, torch.eye(len(info.classes))[[0, 1]]), [*names, CLASS_INPUT]
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes = {"z": {0: batch}, **({"c": {0: batch}} if info.classes else {})}
    with _quiet():
        program = torch.onnx.export(
            net, args, input_names=names, output_names=["image"], dynamo=True,
            dynamic_shapes=shapes, opset_version=OPSET, external_data=False, verbose=False)
    model = program.model_proto
    for node in model.graph.node:  # drop stack traces (local paths) and fx dumps
        keep = [p for p in node.metadata_props if p.key in KEEP_NODE_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    set_metadata(model, info.to_metadata())
    model.producer_name, model.producer_version = "gantool", gantool.__version__
    return model


def set_metadata(model, meta: dict[str, str]) -> None:
    import onnx

    old = {p.key: p.value for p in model.metadata_props}
    old.update(meta)
    del model.metadata_props[:]
    for k, v in old.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))


def save_model(model, path: Path) -> None:
    """Full ``onnx.checker`` check, then an atomic single-file write (models < 2 GB)."""
    import onnx

    data = model.SerializeToString()
    if len(data) >= 2**31:
        raise GantoolError(f"the model is {len(data) / 2**30:.1f} GB; ONNX single files stop at "
                           "2 GB: train with a lower model.max_channels")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise GantoolError(f"the exported ONNX model fails onnx.checker: "
                           f"{str(e).splitlines()[0]}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(data)


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines, warnings and log records are not the user's business."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
