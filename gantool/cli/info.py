"""`gantool info`: what a model file says about itself, and `--verify` of an export folder."""

from __future__ import annotations

from pathlib import Path

import typer

from gantool.cli.export import need_onnx
from gantool.errors import GantoolError


def info(path: Path = typer.Argument(..., help="A checkpoint, an ONNX model, an engine "
                                     "(.plan, read from its .plan.json) or an export folder."),
         verify: bool = typer.Option(False, "--verify", help="Export folder: check every file "
                                     "against the sizes and SHA-256 export.json recorded.")):
    """Print what a model file says about itself: its resolution, latent and provenance.

    Also its prior, default truncation and classes, and a checkpoint's size and cost per image.

    Examples:

      gantool info runs/00001-demo/checkpoints/last.pt

      gantool info export/demo

      gantool info export/demo --verify
    """
    from gantool.artifacts import ONNX, RECORD, check_finished, plan_sidecar, verify_export
    from gantool.model_info import read_plan_sidecar

    if verify:
        typer.echo(f"verified: {', '.join(verify_export(path))} match {RECORD}")
    if path.is_dir():
        path = path / ONNX
    if not path.exists():
        raise GantoolError(f"{path} does not exist")
    check_finished(path)
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from gantool.models.checkpoint import describe, load_checkpoint

        rows = describe(load_checkpoint(path), path)
    elif suffix == ".onnx":
        need_onnx()
        import onnx

        from gantool.model_info import read_onnx_metadata

        rows = {"kind": "ONNX model", **read_onnx_metadata(path).as_dict()}
        model = onnx.load(str(path), load_external_data=False)
        rows["inputs"] = ", ".join(_io(v) for v in model.graph.input)
        rows["outputs"] = ", ".join(_io(v) for v in model.graph.output)
        rows["opset"] = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    elif suffix == ".plan":
        sidecar = plan_sidecar(path)
        if not sidecar.is_file():
            raise GantoolError(f"{sidecar} is missing: a bare plan carries no metadata")
        info, record = read_plan_sidecar(sidecar)
        rows = {"kind": "TensorRT plan", **info.as_dict()}
        rows.update((k, v) for k, v in record.items() if k not in rows and k != "metadata")
    else:
        raise GantoolError(f"{path}: expected a .pt checkpoint, a .onnx model, a .plan engine "
                           "or an export folder")
    if "truncation" in rows:
        rows["truncation"] = truncation_text(rows["truncation"], rows.get("prior"))
    names = rows.get("classes")
    rows["classes"] = (f"{len(names)}: {', '.join(names)}" if names else
                       "none (unconditional)")
    width = max(map(len, rows))
    for key, value in rows.items():
        typer.echo(f"{key:<{width}}  {value}")


def truncation_text(truncation: float | None, prior: str | None) -> str:
    """The model's default truncation as a user reads it: what generate draws with when no
    --truncation is given (``gantool.latent``: None is the plain prior, psi 1 for a
    StyleGAN, whose network applies it in w space; else the largest |z|)."""
    from gantool.latent import NETWORK_TRUNCATION

    if prior in NETWORK_TRUNCATION:
        return ("none (psi 1: the full prior)" if truncation is None else
                f"psi {truncation:g} by default (toward the average w)")
    return ("none (the full prior)" if truncation is None else
            f"{truncation:g} by default (|z| at most {truncation:g})")


def _io(value) -> str:
    import onnx

    t = value.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) for d in t.shape.dim]
    return f"{value.name} {onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)} [{', '.join(dims)}]"
