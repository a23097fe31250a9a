"""Generator -> ONNX: dynamic batch, one file, metadata that describes the model.

Input ``z`` (B, nz) float32, for a conditional model ``class`` (B, K) float32 one-hot rows
(a float input: no OneHot or integer Gather for older TensorRT parsers to refuse), and for a
network that applies its truncation (an imported StyleGAN) ``truncation`` (B, 1) float32 psi,
so that one batch can hold several truncations. Output
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
from gantool.latent import NETWORK_TRUNCATION
from gantool.model_info import (  # noqa: F401 - OUTPUTS: its choices
    CLASS_INPUT,
    OUTPUTS,
    PREFIX,
    TRUNCATION_INPUT,
    ModelInfo,
)
from gantool.models import run_generator
from gantool.sampling.images import to_uint8_tensor

OPSET = 18
MAX_BATCH = 65_536
KEEP_NODE_METADATA = ("pkg.torch.onnx.name_scopes",)  # module paths, for overflow reports


class GraphInputs(nn.Module):
    """The generator with the graph's inputs as positional arguments (z, then class and
    truncation where the model has them), its output optionally as uint8 (B, H, W, C)."""

    def __init__(self, generator: nn.Module, names: list[str], uint8: bool):
        super().__init__()
        self.generator, self.names, self.uint8 = generator, names, uint8

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.names, inputs))
        out = run_generator(self.generator, given["z"], given.get(CLASS_INPUT),
                            given.get(TRUNCATION_INPUT))
        return to_uint8_tensor(out) if self.uint8 else out  # from (B, C, H, W) in [-1, 1]


def export_onnx(generator: nn.Module, info: ModelInfo):
    """``generator`` (eval mode) as an onnx.ModelProto with ``info`` as its metadata (not yet
    saved: see ``save_model``); ``info.output`` says what the graph returns."""
    output = info.output
    if output not in OUTPUTS:
        raise GantoolError(f"unknown output {output!r}; choose {' or '.join(OUTPUTS)}")
    args, names = [torch.zeros(2, info.nz)], ["z"]
    if info.classes:
        args, names = [*args, torch.eye(len(info.classes))[[0, 1]]], [*names, CLASS_INPUT]
    if info.prior in NETWORK_TRUNCATION:
        args, names = [*args, torch.ones(2, 1)], [*names, TRUNCATION_INPUT]
    net = GraphInputs(generator, names, output == "uint8").eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    shapes = (tuple({0: batch} for _ in args),)
    args = tuple(args)
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
