"""`gantool bench`: inference backends side by side, each in its own process."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gantool.errors import GantoolError


def bench(
    checkpoint: Path | None = typer.Argument(
        None, help="A checkpoint (.pt) to measure; without one, DCGAN generators with random "
                   "weights at each --resolution (speed does not depend on the weights)."),
    backend: str = typer.Option("torch,onnx", help="Contenders, comma-separated: torch, "
                                "torch-bf16, torch-fp16, torch-fp16-graphs, torch-fp16-compile, "
                                "torch-compile, onnx, onnx-fp16, trt, triton."),
    batch: str = typer.Option("1,8,32", "--batch-sizes", "--batch", metavar="N,N,...",
                              help="Batch sizes, comma-separated."),
    resolution: str = typer.Option("64", help="Resolutions of the random generators (ignored "
                                   "with a checkpoint)."),
    ngf: int = typer.Option(64, min=1, help="Width of the random generators."),
    warmup: int = typer.Option(3, min=0, help="Untimed calls per contender."),
    calls: int = typer.Option(10, min=1, help="Timed calls per contender (median, p99)."),
    threads: int = typer.Option(0, min=0, help="CPU threads per contender (0: all cores)."),
    repeats: int = typer.Option(1, min=1, help="Runs of every contender, in alternating order, "
                                "each in a fresh process; the table shows medians."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here."),
    compare: Path | None = typer.Option(None, "--compare", help="A earlier --json file: show "
                                        "images/s ratios against it."),
) -> None:
    """Images/s, latency p50/p99, peak memory and roofline fraction per backend and batch.

    Examples:

      gantool bench runs/00001-demo/checkpoints/last.pt --backend torch,onnx

      gantool bench --resolution 256,1024 --backend torch,torch-fp16 --batch-sizes 1,8,32
    """
    from gantool.bench import BASELINE, parse_contenders, parse_ints, run_bench
    from gantool.bench import compare as add_ratios
    from gantool.fileio import read_record

    contenders = parse_contenders(backend)
    batches = parse_ints(batch, "batch")
    resolutions = parse_ints(resolution, "resolution")
    if checkpoint is not None and (checkpoint.suffix != ".pt" or not checkpoint.is_file()):
        raise GantoolError(f"{checkpoint}: pass a gantool checkpoint (.pt) that exists")
    baseline = None
    if compare is not None:
        try:
            baseline = read_record(compare, BASELINE)
        except GantoolError as e:
            raise GantoolError(f"--compare: cannot read it as bench JSON: {e}") from None
    if json_out is not None and json_out.is_dir():
        raise GantoolError(f"--json {json_out} is a folder; pass a file name")
    results = run_bench(checkpoint, contenders, resolutions, batches, ngf, warmup, calls,
                        threads, repeats, log=lambda s: typer.echo(s, err=True))
    if baseline is not None:
        add_ratios(results, baseline)
    _table(results)
    if json_out is not None:
        from gantool.fileio import atomic_write

        with atomic_write(json_out) as f:
            f.write((json.dumps(results, indent=2) + "\n").encode())
        typer.echo(f"wrote {json_out}")


def _table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    ratios = any("vs_baseline" in r for r in results["rows"])
    table = Table(title=f"gantool bench on {results['device']} (torch {results['torch']}, "
                  f"{results['date']})", title_justify="left")
    for name in ("backend", "px", "batch", "img/s", "p50 ms", "p99 ms", "peak MiB",
                 "GFLOP/img", "roofline") + (("vs baseline",) if ratios else ()):
        table.add_column(name, justify="left" if name == "backend" else "right", no_wrap=True)
    for r in results["rows"]:
        head = [r["backend"], str(r["resolution"]), str(r["batch"])]
        if "images_per_s" not in r:
            table.add_row(*head, f"skipped: {r['skipped']}" if "skipped" in r else
                          f"failed: {r.get('error')}")
            continue
        roof = f"{100 * r['roofline']:.3g}%" if "roofline" in r else "-"
        row = head + [f"{r['images_per_s']:,.1f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                      f"{r['peak_mib']:,.0f}", f"{r['gflop_per_image']:.4g}", roof]
        if ratios:
            row.append(f"{r['vs_baseline']:.2f}x" if "vs_baseline" in r else "-")
        table.add_row(*row)
    console = Console(width=max(Console().width, 132))  # a wide table, also when piped
    console.print(table)
    peaks = ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in results["peak_tflops"].items())
    console.print(f"roofline: the generator's counted FLOPs x images/s, as a fraction of the "
                  f"device's measured matmul rate ({peaks or 'not measured'})")
