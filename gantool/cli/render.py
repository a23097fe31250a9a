"""`gantool render`: draw images through a running Triton server, to files."""

from __future__ import annotations

from pathlib import Path

import typer

from gantool.cli import options
from gantool.cli.choices import ImageFormat, Layout, Protocol, SharedMemory
from gantool.cli.options import (
    PNG_LEVEL_HELP,
    WORKERS_HELP,
    image_encoding,
    parse_seed_list,
    sharded,
    writer_workers,
)
from gantool.errors import GantoolError


def render(
    url: str = typer.Option("localhost:8001", help="Triton's HOST:PORT (the gRPC port, or the "
                            "HTTP port with --protocol http)."),
    seeds: str = typer.Option("0-63", help="Seeds, e.g. 0-99999 (ranges inclusive)."),
    truncation: float | None = options.truncation(),
    out: Path = typer.Option(..., "--out", "--outdir", help="Folder for seedNNNNNN.<format> "
                             "files and manifest.jsonl (seeds already there are skipped)."),
    protocol: Protocol = typer.Option("grpc", help="The port's protocol."),
    shared_memory: SharedMemory = typer.Option(
        "auto", help="Triton writes the images into this host's shared memory "
        "(no image crosses the network stack); auto falls back to the wire for a server on "
        "another host."),
    format: ImageFormat = typer.Option("png", "--format", case_sensitive=False,
                                       help="Image file format."),
    png_level: int | None = typer.Option(None, min=0, max=9, help=PNG_LEVEL_HELP),
    quality: int = typer.Option(95, min=1, max=100, help="jpg/webp quality."),
    batch_size: int = typer.Option(8, min=1, help="Seeds per request (capped at the model's "
                                   "max_batch_size)."),
    concurrency: int = typer.Option(4, min=1, help="Requests in flight."),
    workers: int = typer.Option(0, min=0, help=WORKERS_HELP),
    timeout: float = options.seconds(60.0, "Seconds per request before it counts as failed."),
    retry_for: float = options.seconds(60.0, "Seconds a request keeps retrying transient "
                                       "errors (server unreachable or restarting, busy, timed "
                                       "out), with backoff.", zero=True),
    retries: int | None = typer.Option(None, min=0, help="At most this many retries of a "
                                       "request (default: as many as --retry-for allows)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    classes: list[str] = typer.Option(
        [], "--class", metavar="NAME|INDEX",
        help="A conditional model's class: a name, an index, a comma list or all (repeatable; "
             "several: one sub-folder classNNN each). Default: seed s draws class s mod K."),
    shard: str | None = options.shard(),
    layout: Layout = options.layout(),
    tar_images: int = options.tar_images(),
) -> None:
    """Render images for seeds through a running Triton server (gantool serve), to files.

    Examples:

      gantool render --url localhost:8001 --seeds 0-99999 --truncation 0.5 --out renders/

      gantool render --url gpu-box:8000 --protocol http --seeds 0-999 --out renders/ --format jpg

      gantool render --url triton:8001 --seeds 0-9999999 --out renders/ --shard 3/8
    """
    from gantool.serve.client import render_from_server

    if out.exists() and not out.is_dir():
        raise GantoolError(f"--out {out} is a file; pass a folder")
    seed_list, out = sharded(parse_seed_list(seeds), out, None, shard)
    encoding = image_encoding(format, png_level, quality)
    workers = writer_workers(workers)  # 0: one per core; past the cores or open files: fewer
    stats = render_from_server(url, seed_list, truncation, out, encoding, protocol,
                               batch_size, concurrency, workers, timeout, retry_for,
                               retries, progress=progress, shared_memory=shared_memory,
                               classes=classes, layout=layout, per_tar=tar_images)
    skipped = f", skipped {stats['skipped']} already there" if stats["skipped"] else ""
    typer.echo(f"wrote {stats['written']} image(s) to {out}{skipped} "
               f"({stats['images_per_s']:,.1f} images/s, images by {stats['transport']})")
    if stats["failed"]:
        typer.echo(f"error: {stats['failed']} seed(s) failed (reasons above); run the same "
                   "command again to retry them: finished files are skipped", err=True)
        raise typer.Exit(1)
