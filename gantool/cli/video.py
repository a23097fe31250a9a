"""`gantool video`: a latent walk through seeds, as a video, an animation or numbered frames."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from gantool.cli import options
from gantool.cli.choices import Backend, ImageFormat, Precision, Protocol
from gantool.cli.options import image_encoding, parse_seed_list
from gantool.errors import GantoolError

SOURCE, WALK, OUTPUT, ENCODING, BACKEND = "Source", "Walk", "Output", "Encoding", "Backend"


def video(
    model: Path | None = typer.Argument(
        None, metavar="MODEL", show_default=False,
        help="A checkpoint (.pt), an export folder or .onnx file (--backend onnx), a .plan "
             "(--backend trt); none with --url."),
    url: str | None = typer.Option(
        None, metavar="HOST:PORT", rich_help_panel=SOURCE,
        help="Draw the frames on a running Triton server (gantool serve) instead of MODEL."),
    protocol: Protocol = typer.Option("grpc", rich_help_panel=SOURCE,
                                      help="With --url: the port's protocol."),
    seeds: str = typer.Option("0-7", metavar="SEEDS", rich_help_panel=WALK,
                              help="Keyframe seeds, in order, e.g. 0-7 or 3,14,15."),
    frames_per_seed: int = typer.Option(60, min=1, metavar="N", rich_help_panel=WALK,
                                        help="Frames from one keyframe to the next."),
    truncation: float | None = options.truncation(WALK),
    grid: str = typer.Option(
        "1x1", metavar="COLSxROWS", rich_help_panel=WALK,
        help="Several walks side by side; the seeds are shared out in order (0-31 with 4x2: "
             "8 walks of 4 keyframes)."),
    loop: bool = typer.Option(True, "--loop/--no-loop", rich_help_panel=WALK,
                              help="Walk back to the first seed, so the video loops."),
    out: Path | None = typer.Option(
        None, "--out", metavar="FILE", rich_help_panel=OUTPUT,
        help=".mp4, .mkv, .mov, .webm (FFmpeg: the video extra) or an animated .gif/.webp "
             "(short loops)."),
    frames_dir: Path | None = typer.Option(
        None, "--frames-dir", metavar="DIR", rich_help_panel=OUTPUT,
        help="Write frameNNNNNN.<format> files here instead (atomic; a rerun resumes)."),
    fps: float = typer.Option(30.0, min=1.0, max=240.0, metavar="FPS", rich_help_panel=OUTPUT,
                              help="Frames per second."),
    progress: bool = typer.Option(True, "--progress/--no-progress", rich_help_panel=OUTPUT,
                                  help="Show progress (frames/s)."),
    codec: str | None = typer.Option(
        None, metavar="NAME", rich_help_panel=ENCODING,
        help="FFmpeg encoder, e.g. libx264, libx265, libvpx-vp9, h264_nvenc (default: libx264; "
             "libvpx-vp9 for .webm)."),
    crf: int = typer.Option(18, min=0, max=63, metavar="0-63", rich_help_panel=ENCODING,
                            help="Constant quality of x264/x265/VP9/AV1 (lower: better, "
                                 "larger)."),
    bitrate: str | None = typer.Option(None, metavar="RATE", rich_help_panel=ENCODING,
                                       help="A fixed bitrate instead of --crf, e.g. 16M."),
    format: ImageFormat = typer.Option("png", "--format", case_sensitive=False,
                                       rich_help_panel=ENCODING,
                                       help="With --frames-dir: image format."),
    backend: Backend = options.backend(BACKEND),
    device: str = options.device(BACKEND),
    batch_size: int = typer.Option(32, min=1, metavar="N", rich_help_panel=BACKEND,
                                   help="Images per forward pass (frames x walks)."),
    precision: Precision = options.precision(BACKEND),
    fp16: bool = options.fp16(BACKEND),
    ema: bool = options.ema(BACKEND),
    klass: str | None = typer.Option(
        None, "--class", metavar="NAME|INDEX", rich_help_panel=BACKEND,
        help="A conditional model's class for the whole walk (needed for one)."),
) -> None:
    """A smooth walk through the latent space, as a video, an animation or numbered frames.

    Keyframes are the seeds' own images (frame 0 is what gantool generate draws for the first
    seed); between them the path is spherical for the normal prior, straight for the uniform.

    Examples:

      gantool video runs/00001-demo/checkpoints/last.pt --seeds 0-7 --truncation 0.5 --out walk.mp4

      gantool video best.pt --seeds 0-31 --grid 4x2 --frames-per-seed 30 --out loop.gif

      gantool video export/faces --backend onnx --frames-dir frames/ --format jpg

      gantool video --url localhost:8001 --seeds 0-15 --out walk.mp4
    """
    from gantool.backends import FixedClass, check_source, class_indices, open_source
    from gantool.sampling.draw import resolve_truncation
    from gantool.sampling.video import WalkFrames, check_video_path, write_video
    from gantool.sampling.walk import make_walk

    if (out is None) == (frames_dir is None):
        raise GantoolError("pass either --out FILE (a video or animation) or --frames-dir DIR")
    check_source(model, url)
    if out is not None:
        check_video_path(out)
    encoding = image_encoding(format, None, 95) if frames_dir is not None else None
    seed_list = parse_seed_list(seeds)
    cols, rows = _grid(grid)
    gen = open_source(model, url, protocol, backend, device=device, ema=ema, fp16=fp16,
                      precision=precision)
    names = getattr(gen, "classes", ())
    if klass is not None or names:
        if klass is None:
            raise GantoolError(f"this model is conditional ({len(names)} classes): pass --class "
                               "NAME|INDEX for the walk")
        picked = class_indices(names, [klass])
        if len(picked) > 1:
            raise GantoolError("--class: a walk draws one class; pass one name or index")
        gen = FixedClass(gen, picked[0])
    try:
        t = resolve_truncation(gen, truncation)
        try:
            walk = make_walk(seed_list, cols * rows, frames_per_seed, gen.nz, gen.prior, t, loop)
        except ValueError as e:
            raise GantoolError(f"--seeds: {e}") from None
        source = WalkFrames(gen, walk, cols)
        used = f"triton-{protocol}" if url is not None else backend
        if out is not None:
            stats = write_video(source, out, fps, codec, crf, bitrate, batch_size, progress)
            h, w, _ = source.shape
            typer.echo(f"wrote {out}: {stats['frames']} frames of {w}x{h} at {fps:g} fps "
                       f"({stats['frames'] / fps:.1f} s; {stats['frames_per_s']:,.1f} frames/s "
                       f"on {used})")
        else:
            _frames(source, frames_dir, encoding, str(seed_list), grid, loop, frames_per_seed, t,
                    batch_size, used, progress, fps)
    finally:
        if hasattr(gen, "close"):
            gen.close()


def _frames(source, folder: Path, encoding, seeds: str, grid: str, loop: bool,
            frames_per_seed: int, truncation, batch_size: int, backend: str, progress: bool,
            fps: float) -> None:
    """The walk's frames as numbered files, through the render pipeline (atomic, resumable)."""
    from gantool.latent import Seeds
    from gantool.sampling.pipeline import render_seeds

    if folder.exists() and not folder.is_dir():
        raise GantoolError(f"--frames-dir {folder} is a file; pass a folder")
    walk = {"seeds": seeds, "grid": grid.lower(), "loop": loop,
            "frames_per_seed": frames_per_seed}
    stats = render_seeds(source, Seeds([range(source.frames)]), truncation,
                         max(1, batch_size // source.walk.cells), folder, encoding=encoding,
                         backend=backend, progress=progress, stem="frame",
                         identity={"walk": walk}, label="video")
    skipped = f", skipped {stats['skipped']} already there" if stats["skipped"] else ""
    typer.echo(f"wrote {source.frames - stats['skipped']} frame(s) to {folder}{skipped} "
               f"({stats['images_per_s']:,.1f} frames/s)")
    if encoding.fmt != "npy":
        typer.echo(f"to encode them: ffmpeg -framerate {fps:g} -i {folder}/frame%06d."
                   f"{encoding.fmt} -pix_fmt yuv420p walk.mp4")


def _grid(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text, re.ASCII)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise GantoolError(f"--grid {text!r}: write COLSxROWS, e.g. 4x2")
    return int(match[1]), int(match[2])
