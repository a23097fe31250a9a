"""`gantool import`: a generator trained by another tool -> a gantool checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from gantool.cli.choices import ImportKind


def import_generator(
    source: Path = typer.Argument(..., help="The generator file: an NVIDIA StyleGAN2 or "
                                  "StyleGAN3 network pickle (.pkl, from stylegan2-ada-pytorch "
                                  "or stylegan3), a lightweight-gan models/NAME/model_N.pt or a "
                                  "FastGAN-pytorch all_N.pth."),
    out: Path = typer.Option(..., metavar="MODEL.pt", help="The gantool checkpoint to write."),
    kind: ImportKind = typer.Option("auto", help="What the file holds (auto: read it from the "
                                    "file)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Import a generator trained elsewhere, to draw, export and serve it like one of gantool's.

    The file is read without running any of its code (NVIDIA pickles carry the source of their
    networks: it is never executed), the network is rebuilt as gantool's own, and the
    checkpoint records where it came from (file name, SHA-256). Images match the original
    tool's for the same seed and truncation (psi).

    Examples:

      gantool import stylegan2-ffhq-1024x1024.pkl --out ffhq.pt

      gantool info ffhq.pt

      gantool generate ffhq.pt --seeds 85,265,297 --truncation 0.7 --out faces/
    """
    from gantool.importers import import_generator as run
    from gantool.models.checkpoint import describe, load_checkpoint

    if source.is_file():  # a public 1024 px pickle is 360 MB: say what is happening
        typer.echo(f"reading {source} ({source.stat().st_size / 2**20:,.0f} MiB) ...")
    run(source, out, kind, force)
    about = describe(load_checkpoint(out), out)  # read back: what every command will read
    classes = f", {len(about['classes'])} classes" if about["classes"] else ""
    typer.echo(f"wrote {out}: {about['kind']}, {about['resolution']} px, z {about['nz']}"
               f"{classes}, {about['generator']}")
    typer.echo(f"next: gantool generate {out} --seeds 0-15 --truncation 0.7 --grid grid.png")
