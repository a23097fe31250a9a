"""`gantool export`: a checkpoint to verified ONNX, FP16, TensorRT and Triton files."""

from __future__ import annotations

from pathlib import Path

import typer

from gantool.artifacts import RECORD
from gantool.cli.choices import Accelerator, ExportOutput, TritonVariant
from gantool.cli.spelling import spelt
from gantool.errors import GantoolError

TRITON = "Triton (--formats triton)"


def export(
    ctx: typer.Context,
    checkpoint: Path = typer.Argument(..., help="A gantool checkpoint (.pt)."),
    out: Path = typer.Option(..., metavar="DIR", help="Output folder (created if missing)."),
    formats: str = typer.Option("onnx", "--formats", "--format", "-f", metavar="FORMATS",
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

      gantool export runs/00001-demo/checkpoints/last.pt --fp16 --out export/demo

      gantool export best.pt --formats onnx,triton --batch-profile 1,8,32 --out export/demo

      gantool export best.pt --fp16 --formats onnx,engine,triton --triton-variant gpu --out e/
    """
    from gantool.export import parse_formats

    rows = parse_formats(formats)
    try:
        sizes = tuple(int(b) for b in batch.split(",")) if batch.isascii() else ()
    except ValueError:
        sizes = ()
    if len(sizes) != 3:
        raise GantoolError(f"--batch-profile expects min,opt,max (e.g. 1,8,64), got "
                           f"{batch!r}")
    if not checkpoint.is_file():
        raise GantoolError(f"checkpoint {checkpoint} does not exist")
    if out.exists() and not out.is_dir():
        raise GantoolError(f"--out {out} is a file; pass a folder")
    need_onnx()
    from gantool.export.pipeline import export_checkpoint

    nodes = tuple(n.strip() for n in keep_fp32.split(",") if n.strip())
    params = ctx.command.params  # the library names options as {name}: here, their flags
    result = export_checkpoint(checkpoint, out, rows,
                               log=lambda line: typer.echo(spelt(line, params), err=True),
                               fp16=fp16, output=output, batch=sizes, keep_fp32=nodes,
                               verify=verify, ema=ema, fidelity=fidelity,
                               workspace_gb=workspace_gb, triton_variant=triton_variant,
                               triton_instances=triton_instances,
                               triton_accelerator=triton_accelerator)
    for path in result.files:
        typer.echo(f"wrote {path}")
    typer.echo(f"summary: {out / RECORD}")


def need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise GantoolError("export needs the onnx extra: pip install 'gantool[onnx]'") from None
