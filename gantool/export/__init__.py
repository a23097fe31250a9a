"""Export a trained generator: a table of formats, each with its file, needs and precision."""

from __future__ import annotations

from dataclasses import dataclass

from gantool.errors import OptionError, did_you_mean

# Options every format takes, and their defaults (an option at its default is not asked for).
COMMON = ("fp16", "output", "batch", "verify", "ema", "keep_fp32", "fidelity")
OPTION_DEFAULTS = {"workspace_gb": 4.0, "triton_variant": "cpu", "triton_instances": 1,
                   "triton_accelerator": "none"}


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str  # what it writes in the output folder (fp16 variants noted below)
    needs_gpu: bool
    fp16: bool  # whether --fp16 applies
    description: str
    options: tuple[str, ...] = ()  # the options of this format alone (besides COMMON)


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", "model.onnx", False, True,
                 "ONNX, dynamic batch, single file; with --fp16 also model_fp16.onnx"),
    ExportFormat("engine", "model.plan", True, True,
                 "TensorRT plan (bare) + model.plan.json; needs TensorRT and an NVIDIA GPU",
                 ("workspace_gb",)),
    ExportFormat("triton", "model_repository/", False, True,
                 "Triton model repository (latent + generator + render ensemble); "
                 "--triton-variant cpu (python backend + ONNX Runtime) or gpu",
                 ("triton_variant", "triton_instances", "triton_accelerator")),
)}


def check_format_options(formats: list[ExportFormat], options: dict) -> None:
    """A one-line error for an option (not at its default) that none of ``formats`` takes,
    naming the format that does."""
    for key, value in options.items():
        if key in COMMON or value == OPTION_DEFAULTS.get(key, object()):
            continue
        if not any(key in f.options for f in formats):
            owner = next(f.name for f in FORMATS.values() if key in f.options)
            raise OptionError(key, f"only the {owner} format takes it: add that format, "
                              f"e.g. {','.join([*(f.name for f in formats), owner])}",
                              see="formats")


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
