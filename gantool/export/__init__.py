"""Export a trained generator: a table of formats, each row with its file, needs, options, the
formats it is built from, and its builder itself (``gantool.export.pipeline`` runs the rows).

Each format's builder lives in its own module: ``onnx`` (onnx), ``tensorrt`` (engine),
``triton`` (triton). All of them, and so this table, are light to import (no torch): the heavy
work is imported when a model is built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gantool.artifacts import ONNX, ONNX_FP16, PLAN, PLAN_SIDECAR, REPOSITORY
from gantool.errors import OptionError, did_you_mean
from gantool.export.job import ExportJob, ExportOptions
from gantool.export.onnx import build_onnx
from gantool.export.tensorrt import build_engine, check_engine
from gantool.export.triton import build_triton, check_triton

__all__ = ["COMMON", "FORMATS", "ExportFormat", "ExportOptions", "build_order",
           "check_format_options", "parse_formats"]


@dataclass(frozen=True)
class ExportFormat:
    """``builder``: the function that writes it (given the export job; returns the files
    written); ``check``: one that refuses impossible options or a machine that cannot build it,
    before any slow work."""

    name: str
    filename: str  # what it writes in the output folder (fp16 variants noted below)
    needs_gpu: bool
    fp16: bool  # whether the fp16 option applies
    description: str  # naming options as {name}, as OptionError messages do
    builder: Callable[[ExportJob], list[Path]]
    options: tuple[str, ...] = ()  # the options of this format alone
    built_from: tuple[str, ...] = ()  # formats written first (into the same folder)
    check: Callable[[ExportOptions], None] | None = None


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", ONNX, False, True,
                 f"ONNX, dynamic batch, single file; with {{fp16}} also {ONNX_FP16}",
                 build_onnx),
    ExportFormat("engine", PLAN, True, True,
                 f"TensorRT plan (bare) + {PLAN_SIDECAR}; needs TensorRT and an NVIDIA GPU",
                 build_engine, ("workspace_gb",), ("onnx",), check_engine),
    ExportFormat("triton", f"{REPOSITORY}/", False, True,
                 "Triton model repository (latent + generator + render ensemble); "
                 "{triton_variant} cpu (python backend + ONNX Runtime) or gpu",
                 build_triton, ("triton_variant", "triton_instances", "triton_accelerator"),
                 ("onnx",), check_triton),
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
