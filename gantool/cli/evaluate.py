"""`gantool eval`: FID/KID of a checkpoint against a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gantool.errors import GantoolError


def evaluate(
    checkpoint: Path = typer.Argument(..., help="A checkpoint (.pt) or a run directory "
                                      "(its checkpoints/last.pt)."),
    data: str | None = typer.Option(None, help="The real images: folder, .zip, .tar, IDX, "
                                    "builtin:... (default: the run's own training data)."),
    metrics: str = typer.Option("fid,kid", help="Comma-separated: fid, kid."),
    num: int = typer.Option(1000, min=2, help="Images per side (real and generated)."),
    batch_size: int = typer.Option(32, min=1, help="Images per feature-extractor batch."),
    truncation: float | None = typer.Option(None, help="Sampling truncation (default: the "
                                            "model's)."),
    device: str = typer.Option("auto", metavar="auto|cpu|cuda[:N]", help="Where it runs."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Frechet Inception Distance and Kernel Inception Distance (lower is better).

    Example: gantool eval runs/00001-fashion-mnist --num 1000 (real images: the run's data)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gantool.backends import load_backend
    from gantool.data import load_dataset
    from gantool.device import pick_device
    from gantool.metrics.evaluate import METRICS
    from gantool.sampling.latent import validate_truncation

    chosen = [m.strip().lower() for m in metrics.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METRICS]
    if bad or not chosen:
        raise GantoolError(f"--metrics: unknown {bad[0] if bad else 'empty list'!r}; choose "
                           f"from {', '.join(METRICS)}")
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        raise GantoolError(f"checkpoint {checkpoint} does not exist")
    dev = pick_device(device)
    gen = load_backend("torch", str(checkpoint), device=str(dev))
    t = truncation if truncation is not None else gen.default_truncation
    try:
        validate_truncation(t, gen.prior)
    except ValueError as e:
        raise GantoolError(f"--truncation: {e}") from None
    if data is None:
        data = gen.data_path
        if not data:
            raise GantoolError(f"{checkpoint} does not record its training data; pass --data")
        typer.echo(f"data: {data} (the run's; --data picks another)", err=True)
    real = load_dataset(data, gen.resolution, gen.channels, progress=progress)
    from gantool.metrics.evaluate import evaluate as run_eval

    bar = Progress(TextColumn("[bold]features"), BarColumn(), MofNCompleteColumn(),
                   console=Console(stderr=True), disable=not progress)
    with bar:
        task = bar.add_task("features", total=2 * min(num, len(real)))
        result = run_eval(gen, real.images, chosen, num, batch_size, t, str(dev),
                          on_batch=lambda n: bar.advance(task, n))
    note = " (real statistics from the cache)" if result["real_cached"] else ""
    typer.echo(f"{result['num_fake']} generated vs {result['num_real']} real images{note}, "
               f"{result['images_per_s']:.1f} images/s")
    if "fid" in result:
        typer.echo(f"FID {result['fid']:.2f}")
    if "kid" in result:
        typer.echo(f"KID {result['kid']:.5f} +- {result['kid_std']:.5f}")
    if json_out is not None:
        json_out.write_text(json.dumps({"checkpoint": str(checkpoint), "data": data, **result},
                                       indent=2) + "\n")


def report(run_dir: Path = typer.Argument(..., help="A run directory (runs/NNNNN-name)."),
           out: Path | None = typer.Option(None, help="HTML file (default: "
                                           "RUN_DIR/report/index.html)")) -> None:
    """Write a self-contained HTML page of a run: curves, guard events, samples over time.

    Examples:

      gantool report runs/00001-fashion-mnist

      gantool report runs/00001-fashion-mnist --out fashion.html   (one file, nothing else)
    """
    from gantool.report import write_report

    if not run_dir.is_dir():
        raise GantoolError(f"{run_dir} is not a run directory")
    typer.echo(f"wrote {write_report(run_dir, out)}")
