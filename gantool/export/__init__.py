"""Export a trained generator: a table of formats, each with its file, needs, options, the
formats it is built from, and its builder (``gantool.export.pipeline`` dispatches on it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gantool.errors import OptionError, did_you_mean


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


@dataclass(frozen=True)
class ExportFormat:
    """``builder``: the ``gantool.export.pipeline`` function that writes it (given the export
    job; returns the files written); ``check``: one that refuses impossible options or a
    machine that cannot build it, before any slow work."""

    name: str
    filename: str  # what it writes in the output folder (fp16 variants noted below)
    needs_gpu: bool
    fp16: bool  # whether --fp16 applies
    description: str
    builder: str
    options: tuple[str, ...] = ()  # the options of this format alone
    built_from: tuple[str, ...] = ()  # formats written first (into the same folder)
    check: str | None = None


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", "model.onnx", False, True,
                 "ONNX, dynamic batch, single file; with --fp16 also model_fp16.onnx",
                 "build_onnx"),
    ExportFormat("engine", "model.plan", True, True,
                 "TensorRT plan (bare) + model.plan.json; needs TensorRT and an NVIDIA GPU",
                 "build_engine", ("workspace_gb",), ("onnx",), "check_engine"),
    ExportFormat("triton", "model_repository/", False, True,
                 "Triton model repository (latent + generator + render ensemble); "
                 "--triton-variant cpu (python backend + ONNX Runtime) or gpu",
                 "build_triton", ("triton_variant", "triton_instances", "triton_accelerator"),
                 ("onnx",), "check_triton"),
)}
# options every format takes
COMMON = tuple(f.name for f in dataclasses.fields(ExportOptions)
               if not any(f.name in row.options for row in FORMATS.values()))


def check_format_options(formats: list[ExportFormat], options: ExportOptions) -> None:
    """A one-line error for an option (not at its default) that none of ``formats`` takes,
    naming the format that does."""
    default = ExportOptions()
    for key in (f.name for f in dataclasses.fields(ExportOptions) if f.name not in COMMON):
        if getattr(options, key) == getattr(default, key):
            continue
        if not any(key in f.options for f in formats):
            owner = next(f.name for f in FORMATS.values() if key in f.options)
            raise OptionError(key, f"only the {owner} format takes it: add that format, "
                              f"e.g. {','.join([*(f.name for f in formats), owner])}",
                              see="formats")


def build_order(formats: list[ExportFormat]) -> list[ExportFormat]:
    """``formats`` and the ones they are built from, in the table's order: each after what it
    is built from, and the Triton repository after the plan it may serve."""
    wanted = {f.name for f in formats}
    while extra := {n for f in FORMATS.values() if f.name in wanted for n in f.built_from} - wanted:
        wanted |= extra
    return [f for f in FORMATS.values() if f.name in wanted]


def parse_formats(text: str) -> list[ExportFormat]:
    """"onnx,engine" -> their ExportFormat rows; a typo gets a close-match suggestion."""
    out = []
    for name in (n.strip().lower() for n in text.split(",") if n.strip()):
        if name not in FORMATS:
            raise OptionError("formats", f"unknown export format {name!r}"
                              f"{did_you_mean(name, FORMATS)}; formats: {', '.join(FORMATS)}")
        if FORMATS[name] not in out:
            out.append(FORMATS[name])
    if not out:
        raise OptionError("formats", f"names no format; formats: {', '.join(FORMATS)}")
    return out
