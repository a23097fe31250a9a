"""Export a trained generator: a table of formats, each with its file, needs and precision."""

from __future__ import annotations

from dataclasses import dataclass

from gantool.errors import GantoolError, did_you_mean


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str  # what it writes in the output folder (fp16 variants noted below)
    needs_gpu: bool
    fp16: bool  # whether --fp16 applies
    description: str


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", "model.onnx", False, True,
                 "ONNX, dynamic batch, single file; with --fp16 also model_fp16.onnx"),
    ExportFormat("engine", "model.plan", True, True,
                 "TensorRT plan (bare) + model.plan.json; needs TensorRT and an NVIDIA GPU"),
    ExportFormat("triton", "model_repository/", False, True,
                 "Triton model repository (latent + generator + render ensemble); "
                 "--triton-variant cpu (python backend + ONNX Runtime) or gpu"),
)}


def parse_formats(text: str) -> list[ExportFormat]:
    """"onnx,engine" -> their ExportFormat rows; a typo gets a close-match suggestion."""
    out = []
    for name in (n.strip().lower() for n in text.split(",") if n.strip()):
        if name not in FORMATS:
            raise GantoolError(f"unknown export format {name!r}{did_you_mean(name, FORMATS)}; "
                               "formats: "
                               f"{', '.join(FORMATS)}")
        if FORMATS[name] not in out:
            out.append(FORMATS[name])
    if not out:
        raise GantoolError(f"--format names no format; formats: {', '.join(FORMATS)}")
    return out
