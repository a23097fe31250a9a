"""`gantool export` and `gantool info`."""

from __future__ import annotations

from pathlib import Path

import typer

from gantool.cli.choices import Accelerator, ExportOutput, TritonVariant
from gantool.errors import GantoolError

TRITON = "Triton (--formats triton)"


def export(
    checkpoint: Path = typer.Argument(..., help="A gantool checkpoint (.pt)."),
    out: Path = typer.Option(..., metavar="DIR", help="Output folder (created if missing)."),
    format: str = typer.Option("onnx", "--formats", "--format", "-f", metavar="FORMATS",
                               help="Comma-separated: onnx, engine (TensorRT), triton (a "
                               "Triton model repository)."),
    fp16: bool = typer.Option(False, "--fp16", help="Also an FP16 ONNX model; FP16 engine."),
    output: ExportOutput = typer.Option("uint8", help="Model output: uint8 (B,H,W,C) images, or "
                                        "the float (B,C,H,W) tensor in [-1, 1]."),
    batch: str = typer.Option("1,8,64", "--batch-profile", "--batch", metavar="MIN,OPT,MAX",
                              help="Batch range: the engine profile; Triton's max_batch_size "
                              "and preferred batches."),
    keep_fp32: str = typer.Option("", metavar="NODES",
                                  help="ONNX node names to keep in float32 with --fp16 (named "
                                  "by a failed fp16 verification)."),
    workspace_gb: float = typer.Option(4.0, metavar="GIB",
                                       help="TensorRT builder workspace limit, GiB."),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Check every artifact against PyTorch on fixed seeds."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Export the EMA weights if present."),
    fidelity: int = typer.Option(0, min=0, metavar="SEEDS",
                                 help="With --fp16: KID and FID between PyTorch's and the FP16 "
                                 "model's images on this many seeds (needs the metrics extra)."),
    triton_variant: TritonVariant = typer.Option(
        "cpu", rich_help_panel=TRITON, help="cpu: python backend running ONNX Runtime, runs "
        "anywhere; gpu: the TensorRT plan if built, else ONNX Runtime on the GPU."),
    triton_instances: int = typer.Option(1, rich_help_panel=TRITON, metavar="N",
                                         help="Generator instances (per GPU)."),
    triton_accelerator: Accelerator = typer.Option(
        "none", rich_help_panel=TRITON, help="The gpu variant with ONNX: tensorrt is ONNX "
        "Runtime's TensorRT FP16 accelerator."),
) -> None:
    """Export a generator to ONNX, FP16 ONNX, TensorRT and a Triton repository, verified.

    Examples:

      gantool export runs/00001-fashion-mnist/checkpoints/best.pt --fp16 --out export/fmnist

      gantool export best.pt --formats onnx,triton --batch-profile 1,8,32 --out export/fmnist

      gantool export best.pt --fp16 --formats onnx,engine,triton --triton-variant gpu --out e/
    """
    from gantool.export import check_format_options, parse_formats

    formats = parse_formats(format)
    check_format_options(formats, {
        "workspace_gb": workspace_gb, "triton_variant": triton_variant,
        "triton_instances": triton_instances, "triton_accelerator": triton_accelerator})
    try:
        sizes = tuple(int(b) for b in batch.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3:
        raise GantoolError(f"--batch-profile expects min,opt,max (e.g. 1,8,64), got "
                           f"{batch!r}")
    triton = any(f.name == "triton" for f in formats)
    if triton:
        from gantool.serve.repository import check_options

        check_options(triton_variant, triton_instances, triton_accelerator, output)
    if not checkpoint.is_file():
        raise GantoolError(f"checkpoint {checkpoint} does not exist")
    if out.exists() and not out.is_dir():
        raise GantoolError(f"--out {out} is a file; pass a folder")
    _need_onnx()
    from gantool.export.pipeline import export_checkpoint, write_summary

    if fidelity and not fp16:
        raise GantoolError("--fidelity measures the FP16 model: add --fp16")
    if fidelity == 1:
        raise GantoolError("--fidelity needs at least 2 seeds")
    from gantool.export.folder import staged

    nodes = [n.strip() for n in keep_fp32.split(",") if n.strip()]
    with staged(out) as stage:  # the folder changes as a whole, once everything is verified
        result = export_checkpoint(checkpoint, stage, formats, fp16=fp16, output=output,
                                   batch=sizes, keep_fp32=nodes, verify=verify, ema=ema,
                                   workspace_gb=workspace_gb, fidelity_num=fidelity,
                                   log=lambda s: typer.echo(s, err=True))
        write_summary(stage, result)
        if triton:
            from gantool.serve.repository import write_repository

            result.files.append(write_repository(stage, triton_variant, sizes,
                                                 triton_instances, triton_accelerator, fp16))
            write_summary(stage, result)  # now listing the repository too
    for path in result.files:
        typer.echo(f"wrote {out / path.name}")
    typer.echo(f"summary: {out / 'export.json'}")


def info(path: Path = typer.Argument(..., help="A checkpoint, an ONNX model, an engine "
                                     "(.plan, read from its .plan.json) or an export folder."),
         verify: bool = typer.Option(False, "--verify", help="Export folder: check every file "
                                     "against the sizes and SHA-256 export.json recorded.")):
    """Print what a model file says about itself: resolution, latent, prior, provenance, and
    for a checkpoint the generator's size and multiply-adds per image.

    Examples: gantool info runs/00001-fashion-mnist/checkpoints/best.pt; gantool info export/fmnist;
    gantool info export/fmnist --verify
    """
    import json

    from gantool.export.folder import check_finished
    from gantool.model_info import ModelInfo

    if verify:
        _verify_export(path)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.exists():
        raise GantoolError(f"{path} does not exist")
    check_finished(path)
    suffix = path.suffix.lower()
    if suffix == ".pt":
        from gantool.models.checkpoint import generator_from_state, load_checkpoint
        from gantool.models.layers import generator_cost

        state = load_checkpoint(path)
        for ema in (False, True):  # both sets of weights must fit: info vouches for the file
            net, m, _, _ = generator_from_state(state, path, ema)
        params, macs = generator_cost(net, m.nz)
        rows = {"kind": "gantool checkpoint", "step": state["step"],
                "run": state["config"].get("name"),
                "resolution": m.resolution, "channels": m.channels, "nz": m.nz,
                "arch": f"{m.arch} / {m.d_arch}",
                "generator": f"{params / 1e6:.2f} M parameters, {macs / 1e9:.3g} G "
                             "multiply-adds per image",
                "prior": m.prior, "truncation": m.truncation,
                "ema": state.get("G_ema") is not None,
                "classes": m.classes,
                "gantool_version": state.get("gantool_version")}
    elif suffix == ".onnx":
        _need_onnx()
        import onnx

        from gantool.export.onnx import read_metadata

        rows = {"kind": "ONNX model", **read_metadata(path).as_dict()}
        model = onnx.load(str(path), load_external_data=False)
        rows["inputs"] = ", ".join(_io(v) for v in model.graph.input)
        rows["outputs"] = ", ".join(_io(v) for v in model.graph.output)
        rows["opset"] = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    elif suffix == ".plan":
        sidecar = path.with_suffix(".plan.json")
        if not sidecar.is_file():
            raise GantoolError(f"{sidecar} is missing: a bare plan carries no metadata")
        data = json.loads(sidecar.read_text())
        info = ModelInfo.from_metadata(data.pop("metadata"), str(sidecar))
        rows = {"kind": "TensorRT plan", **info.as_dict(), **data}
    else:
        raise GantoolError(f"{path}: expected a .pt checkpoint, a .onnx model, a .plan engine "
                           "or an export folder")
    names = rows.get("classes")
    rows["classes"] = (f"{len(names)}: {', '.join(names)}" if names else
                       "none (unconditional)")
    width = max(map(len, rows))
    for key, value in rows.items():
        typer.echo(f"{key:<{width}}  {value}")


def _verify_export(folder: Path) -> None:
    """Every file of an export folder against export.json's sizes and SHA-256."""
    import json

    from gantool.export.folder import changed_files, check_finished

    if not (folder / "export.json").is_file():
        raise GantoolError(f"--verify checks an export folder; {folder} has no export.json")
    check_finished(folder)
    problems = changed_files(folder)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GantoolError(problems[0] + more)
    recorded = json.loads((folder / "export.json").read_text()).get("hashes", {})
    if not recorded:
        raise GantoolError(f"{folder}/export.json records no hashes (an export from an older "
                           "gantool); export again to be able to verify it")
    typer.echo(f"verified: {', '.join(sorted(recorded))} match export.json")


def _io(value) -> str:
    import onnx

    t = value.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) for d in t.shape.dim]
    return f"{value.name} {onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)} [{', '.join(dims)}]"


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise GantoolError("export needs the onnx extra: pip install 'gantool[onnx]'") from None
