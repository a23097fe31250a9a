"""`gantool generate`: images by seed and truncation from a checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from gantool.cli import options
from gantool.cli.choices import Backend, Engine, ImageFormat, Layout, Precision, Prior
from gantool.errors import GantoolError

PNG_LEVEL_HELP = ("PNG zlib level 0-9 through Pillow (9: smallest files, slowest). Default: the "
                  "fastest exact writer, fpng where installed (the fastpng extra).")
WORKERS_HELP = "Encoding threads or processes (0: one per core)."
RAY = "Cluster (--engine ray)"


def generate(
    checkpoint: Path = typer.Argument(
        ..., help="A checkpoint (.pt) for torch; a .onnx file or export folder for onnx; a "
                  ".plan or export folder for trt."),
    seeds: str = typer.Option("0-63", help="Seeds, e.g. 0-63,100 (ranges inclusive)."),
    truncation: float | None = options.truncation(),
    prior: Prior | None = typer.Option(None, help="The latent prior (default: the model's)."),
    outdir: Path | None = typer.Option(
        None, "--out", "--outdir",
        help="Write one seedNNNNNN.<format> per seed here (seeds already there are skipped: an "
             "interrupted render resumes); manifest.jsonl lists them."),
    format: ImageFormat = typer.Option("png", "--format", case_sensitive=False,
                                       help="Image file format."),
    png_level: int | None = typer.Option(None, min=0, max=9, help=PNG_LEVEL_HELP),
    quality: int = typer.Option(95, min=1, max=100, help="jpg/webp quality."),
    workers: int = typer.Option(0, min=0, help=WORKERS_HELP),
    grid: Path | None = typer.Option(None, help="Write all images as one grid to this file."),
    batch_size: int = typer.Option(32, min=1, help="Seeds per forward pass."),
    backend: Backend = options.backend(),
    fp16: bool = options.fp16(),
    precision: Precision = options.precision(),
    compile: bool = typer.Option(False, "--compile", help="torch: torch.compile the generator."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs",
                                     help="torch on CUDA: replay captured CUDA graphs."),
    device: str = options.device(),
    ema: bool = options.ema(),
    sweep: str | None = typer.Option(
        None, "--truncation-sweep", help="With --grid: one row per truncation value, e.g. "
        "0.25,0.5,0.75,1 (the same seeds in every row; 'none' for the plain prior)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    classes: list[str] = typer.Option(
        [], "--class", metavar="NAME|INDEX",
        help="A conditional model's class: a name, an index, a comma list or all (repeatable). "
             "Several: --grid gets one row per class and --out one sub-folder per class "
             "(classNNN). Default: seed s draws class s mod the class count."),
    shard: str | None = options.shard(),
    layout: Layout = options.layout(),
    tar_images: int = options.tar_images(),
    devices: str | None = typer.Option(
        None, "--devices", metavar="all|N|LIST",
        help="One process per device, each drawing its shard of the seeds into "
             "OUT/shard-IIIII-of-NNNNN, then merged (gantool merge-shards): all (every visible "
             "GPU), a count of GPUs, or a list (cuda:0,cuda:1; cpu,cpu splits the cores)."),
    engine: Engine = typer.Option(
        "local", rich_help_panel=RAY,
        help="ray: the shards of the seed list as a Ray dataset, drawn by an actor pool on a "
             "Ray cluster (the ray extra), then merged; --out and the model on storage every "
             "node sees."),
    address: str | None = typer.Option(
        None, rich_help_panel=RAY, help="The Ray cluster (auto: the running one, or "
        "ray://HOST:10001). Default: start one on this machine."),
    actors: int | None = typer.Option(
        None, min=1, rich_help_panel=RAY,
        help="Actors drawing at once (default: one per GPU of the cluster; without GPUs or "
             "with --device cpu, one per --actor-cpus CPUs)."),
    shards: int | None = typer.Option(None, min=1, rich_help_panel=RAY,
                                      help="Shards of the seed list (default: 4 per actor)."),
    actor_cpus: float = typer.Option(1.0, min=0.01, rich_help_panel=RAY,
                                     help="CPU slots per actor on a cluster without GPUs."),
) -> None:
    """Draw images for seeds: the same seed and truncation give the same image on every backend.

    Examples:

      gantool generate runs/00001-demo/checkpoints/last.pt --seeds 0-63 --grid grid.png

      gantool generate export/demo --backend onnx --seeds 0-99999 --out renders/ --format jpg

      gantool generate best.pt --seeds 0-7 --truncation-sweep 0.25,0.5,1,none --grid sweep.png

      gantool generate conditional.pt --class all --seeds 0-9 --grid classes.png

      gantool generate export/demo --backend onnx --seeds 0-999999 --out renders/ --shard 3/8

      gantool generate best.pt --seeds 0-99999 --out tars/ --layout webdataset --format jpg

      gantool generate export/m --backend trt --seeds 0-9999999 --out renders/ --devices all

      gantool generate /shared/m.pt --seeds 0-9999999 --out /shared/r --engine ray --address auto
    """
    from gantool.backends import FixedClass, class_indices
    from gantool.sampling.render import check_drawable, render_images

    if outdir is None and grid is None:
        raise GantoolError("nothing to write: pass --out DIR and/or --grid FILE")
    if engine == "ray":
        _on_ray(parse_seed_list(seeds), outdir, grid, shard, devices, sweep, progress, workers,
                checkpoint, backend, device, classes, address, actors, shards, actor_cpus)
        return
    if devices is not None:
        _on_devices(devices, parse_seed_list(seeds), outdir, grid, shard, device, progress,
                    workers > 0, checkpoint, backend, classes)
        return
    seed_list, outdir = sharded(parse_seed_list(seeds), outdir, grid, shard)
    workers = writer_workers(workers) if outdir is not None else None
    gen = open_backend(checkpoint, backend, device, ema, prior, fp16, precision, compile,
                       cuda_graphs)
    t = resolve_truncation(gen, truncation)
    check_drawable(seed_list, gen.prior)
    if grid is not None and grid.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise GantoolError(f"--grid {grid}: use a .png, .jpg or .webp file name")
    picked = class_indices(getattr(gen, "classes", ()), classes) if classes else []
    if len(picked) > 1:
        _per_class(gen, picked, seed_list, t, grid, outdir, batch_size, sweep,
                   lambda g, out, label: render_images(
                       g, seed_list, t, batch_size, out, None, layout, tar_images,
                       str(checkpoint), encoding=image_encoding(format, png_level, quality),
                       workers=workers, backend=backend, progress=progress,
                       identity=label))
        return
    identity = None
    if picked:
        gen, identity = FixedClass(gen, picked[0]), {"class": gen.classes[picked[0]]}
    if sweep is not None:
        _sweep(gen, seed_list, sweep, grid, outdir, batch_size)
        return
    stats = render_images(gen, seed_list, t, batch_size, outdir, grid, layout, tar_images,
                          str(checkpoint), encoding=image_encoding(format, png_level, quality),
                          workers=workers, backend=backend, progress=progress,
                          identity=identity)
    where = " and ".join(str(p) for p in (outdir, grid) if p is not None)
    skipped = f", skipped {stats['skipped']} already there" if stats["skipped"] else ""
    typer.echo(f"wrote {len(seed_list) - stats['skipped']} image(s) to {where}{skipped} "
               f"({stats['images_per_s']:,.1f} images/s)")


def _on_devices(text: str, seed_list, outdir: Path | None, grid: Path | None,
                shard: str | None, device: str, progress: bool, workers_given: bool,
                checkpoint: Path, backend: str, classes: list[str]) -> None:
    """generate --devices: a process per device on its shard (``gantool.cli.devices``), then
    the merge of the shards."""
    from gantool.cli.devices import resolve_devices, run_on_devices
    from gantool.cli.main import ARGV
    from gantool.sampling.shards import finish

    if outdir is None or grid is not None or shard is not None or device != "auto":
        raise GantoolError("--devices renders into --out, each device its shard: leave out "
                           "--grid, --shard and --device")
    whole_list_only("--devices")
    found = resolve_devices(text)
    t0 = time.perf_counter()
    total = len(seed_list) * _images_per_seed(checkpoint, backend, classes)
    lines = run_on_devices(ARGV, found, outdir, total, progress, workers_given, backend != "trt")
    for line in lines:
        typer.echo(line)
    done = finish(outdir)
    seconds = time.perf_counter() - t0
    typer.echo(f"{outdir}: {done['images']:,} image(s) from {len(found)} device(s) "
               f"({', '.join(found)}) listed in {done['index']} ({seconds:,.0f} s)")


def _on_ray(seed_list, outdir: Path | None, grid: Path | None, shard: str | None,
            devices: str | None, sweep: str | None, progress: bool, workers: int,
            checkpoint: Path, backend: str, device: str, classes: list[str],
            address: str | None, actors: int | None, shards: int | None,
            actor_cpus: float) -> None:
    """generate --engine ray: the shards drawn by a Ray actor pool (``gantool.cli.ray_engine``),
    then merged."""
    from gantool.cli.main import ARGV
    from gantool.cli.ray_engine import ray_module, run_on_ray
    from gantool.sampling.shards import finish

    ray_module(address)  # the install hint first (and the settings before the import)
    if outdir is None or grid is not None or shard is not None or devices is not None \
            or sweep is not None:
        raise GantoolError("--engine ray renders into --out, each actor its shards: leave out "
                           "--grid, --shard, --devices and --truncation-sweep")
    whole_list_only("--engine ray")
    if not checkpoint.exists():
        raise GantoolError(f"{checkpoint} does not exist")
    t0 = time.perf_counter()
    total = len(seed_list) * _images_per_seed(checkpoint, backend, classes)
    where = run_on_ray(ARGV, outdir, total, address, actors, shards, actor_cpus, progress,
                       workers or None, device != "cpu")
    done = finish(outdir)
    seconds = time.perf_counter() - t0
    typer.echo(f"{outdir}: {done['images']:,} image(s) from {where}, listed in "
               f"{done['index']} ({seconds:,.0f} s)")


def whole_list_only(flag: str) -> None:
    """``flag`` splits the whole seed list itself: a job's environment that names this
    process's shard (torchrun, a Slurm array, an Indexed Job) is a one-line error, or every
    process of the job would draw every seed."""
    from gantool.sampling.shards import shard_from

    try:
        job = shard_from(None)
    except ValueError as e:
        raise GantoolError(str(e)) from None
    if job is not None and job.count > 1:
        raise GantoolError(f"{flag} splits the whole seed list, but this process is shard {job} "
                           f"of a job ({job.source}): each of the job's processes would draw "
                           f"every seed; leave out {flag} (each then draws its shard)")


def _images_per_seed(checkpoint: Path, backend: str, classes: list[str]) -> int:
    """Images a seed gives: one per asked class (the model opened here to check them)."""
    if not classes:
        return 1
    from gantool.backends import class_indices

    gen = open_backend(checkpoint, backend, "auto" if backend == "trt" else "cpu")
    return len(class_indices(getattr(gen, "classes", ()), classes))


def parse_seed_list(text: str):
    """--seeds as a lazy seed list, or a one-line error."""
    from gantool.sampling.latent import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as e:
        raise GantoolError(f"--seeds: {e}") from None


def writer_workers(asked: int) -> int | None:
    """--workers (0: one per usable core) as the encoders the writer runs: past the cores or the
    open-file limit it would only run out of files, so fewer, said in one line."""
    from gantool.sampling.writer import capped_workers

    if not asked:
        return None
    workers, note = capped_workers(asked)
    if note:
        typer.echo(note, err=True)
    return workers


def sharded(seed_list, out: Path | None, grid: Path | None, flag: str | None):
    """(seeds, folder) this process renders: its shard of ``seed_list`` and the shard's folder
    under ``out`` (``gantool.sampling.shards``), said on the terminal; the whole list and
    ``out`` when there is no shard. A shard renders files: not without --out, nor with --grid,
    which needs every seed."""
    from gantool.sampling.shards import shard_from

    try:
        shard = shard_from(flag)
    except ValueError as e:
        raise GantoolError(str(e)) from None
    if shard is None or shard.count == 1 and out is None:
        return seed_list, out
    if out is None or grid is not None:
        raise GantoolError(f"a shard ({shard} from {shard.source}) draws part of the seeds into "
                           "--out; a grid needs them all: leave out --grid (or pass --shard "
                           "0/1)" if out is not None else "--shard renders files: pass --out")
    part, folder = shard.claim(out, seed_list)
    if shard.count > 1:
        typer.echo(f"shard {shard} (from {shard.source}): {len(part):,} of {len(seed_list):,} "
                   f"seeds ({part}) into {folder}", err=True)
    return part, folder


def open_backend(model: Path, backend: str, device: str = "auto", ema: bool = True,
                 prior: str | None = None, fp16: bool = False, precision: str = "fp32",
                 compile: bool = False, cuda_graphs: bool = False):
    """The backend named ``backend`` on ``model``: one-line errors for a missing path, or an
    option that backend does not take (``gantool.backends.OPTIONS``)."""
    from gantool.backends import check_options, load_backend

    options = check_options(backend, {
        "device": device, "ema": ema, "prior": prior, "fp16": fp16, "precision": precision,
        "compile": compile, "cuda_graphs": cuda_graphs})  # before the model is opened
    if not model.exists():
        raise GantoolError(f"{model} does not exist")
    if backend == "torch" and not model.is_file():
        raise GantoolError(f"{model} is a folder; the torch backend takes a checkpoint file")
    return load_backend(backend, str(model), **options)


def resolve_truncation(gen, truncation: float | None) -> float | None:
    """``truncation`` (inf: none, the plain prior), or the model's default; a one-line error if
    the prior refuses it."""
    from gantool.sampling.latent import asked_truncation, validate_truncation

    t = asked_truncation(truncation, gen.default_truncation)
    try:
        validate_truncation(t, gen.prior)
    except ValueError as e:
        raise GantoolError(f"--truncation: {e}") from None
    return t


def _per_class(gen, picked: list[int], seeds: list[int], truncation: float | None,
               grid: Path | None, outdir: Path | None, batch_size: int, sweep: str | None,
               render) -> None:
    """Several classes: ``grid`` with one row per class (the same seeds in every row), and
    ``outdir/classNNN`` per class through ``render(generator, folder, manifest identity)``."""
    import numpy as np

    from gantool.backends import FixedClass
    from gantool.sampling.images import save_grid
    from gantool.sampling.latent import batched
    from gantool.sampling.render import check_grid_size

    if sweep is not None:
        raise GantoolError("--truncation-sweep draws one class: pass a single --class")
    if grid is not None:
        check_grid_size(len(seeds) * len(picked), (gen.resolution, gen.resolution, gen.channels))
        rows = [np.concatenate([gen.generate(chunk, truncation, [i] * len(chunk))
                                for chunk in batched(seeds, batch_size)]) for i in picked]
        save_grid(np.concatenate(rows), grid, ncols=len(seeds))
        typer.echo(f"wrote a grid of {len(picked)} classes x {len(seeds)} seeds to {grid}")
    for i in picked if outdir is not None else ():
        folder = outdir / f"class{i:03d}"
        stats = render(FixedClass(gen, i), folder, {"class": gen.classes[i]})
        typer.echo(f"{gen.classes[i]}: wrote {stats['written']} image(s) to {folder}")


def _sweep(gen, seeds: list[int], text: str, grid: Path | None, outdir: Path | None,
           batch_size: int) -> None:
    """The same seeds at several truncations, one grid row per value (the megapixel paper's
    comparison of z intervals)."""
    import numpy as np

    from gantool.sampling.images import save_grid
    from gantool.sampling.latent import batched, validate_truncation
    from gantool.sampling.render import check_grid_size

    if grid is None or outdir is not None:
        raise GantoolError("--truncation-sweep writes one grid: pass --grid FILE, not --out")
    values: list[float | None] = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        try:
            if not item.isascii():  # float() reads other scripts' digits; the CLI does not
                raise ValueError("not a number in digits 0-9")
            t = None if item.lower() == "none" else float(item)
            validate_truncation(t, gen.prior)
        except ValueError as e:
            raise GantoolError(f"--truncation-sweep {item!r}: {e}") from None
        values.append(t)
    if not values:
        raise GantoolError("--truncation-sweep needs at least one value, e.g. 0.5,1")
    check_grid_size(len(seeds) * len(values), (gen.resolution, gen.resolution, gen.channels))
    rows = [np.concatenate([gen.generate(chunk, t) for chunk in batched(seeds, batch_size)])
            for t in values]
    save_grid(np.concatenate(rows), grid, ncols=len(seeds))
    labels = ", ".join("none" if t is None else f"{t:g}" for t in values)
    typer.echo(f"wrote {grid}: {len(values)} rows (truncation {labels}) x {len(seeds)} seeds")


def image_encoding(fmt: str, png_level: int | None, quality: int):
    """The --format/--png-level/--quality options as one Encoding, or a one-line error."""
    from gantool.sampling.images import Encoding

    try:
        return Encoding(fmt.lower(), png_level, quality)
    except ValueError as e:
        raise GantoolError(f"--format: {e}") from None
