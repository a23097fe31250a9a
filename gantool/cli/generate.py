"""`gantool generate`: images by seed and truncation from a checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import typer

from gantool.cli import options
from gantool.cli.choices import Backend, Engine, ImageFormat, Layout, Precision, Prior
from gantool.cli.options import (
    PNG_LEVEL_HELP,
    WORKERS_HELP,
    image_encoding,
    parse_seed_list,
    parse_sweep,
    sharded,
    writer_workers,
)
from gantool.errors import GantoolError

RAY = "Cluster (--engine ray)"
# what each shard's process gets its own value of, or only the engine's driver takes
PER_SHARD = ("--devices", "--device", "--shard", "--workers", "--engine", "--address", "--actors",
             "--shards", "--actor-cpus")
ENGINE_FLAGS = ("--progress", "--no-progress")  # the engine's own bar replaces each shard's


def generate(
    ctx: typer.Context,
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
    from gantool.backends import FixedClass, class_indices, open_backend
    from gantool.sampling.draw import render_images, resolve_truncation
    from gantool.sampling.pipeline import check_drawable

    if outdir is None and grid is None:
        raise GantoolError("nothing to write: pass --out DIR and/or --grid FILE")
    argv = ctx.obj["argv"]  # the command line, which each shard's process runs again
    if engine == "ray":
        _on_ray(argv, parse_seed_list(seeds), outdir, grid, shard, devices, sweep, progress,
                workers, checkpoint, backend, device, classes, address, actors, shards,
                actor_cpus)
        return
    if devices is not None:
        _on_devices(argv, devices, parse_seed_list(seeds), outdir, grid, shard, device,
                    progress, workers > 0, checkpoint, backend, classes)
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
    several = len(picked) > 1  # their grid takes no encoding; their folders do
    encoding = image_encoding(format, png_level, quality) if outdir or not several else None
    render = {"layout": layout, "per_tar": tar_images, "model": str(checkpoint),
              "encoding": encoding, "workers": workers, "backend": backend,
              "progress": progress}
    if several:
        _per_class(gen, picked, seed_list, t, grid, outdir, batch_size, sweep, render)
        return
    identity = None
    if picked:
        gen, identity = FixedClass(gen, picked[0]), {"class": gen.classes[picked[0]]}
    if sweep is not None:
        _sweep(gen, seed_list, sweep, grid, outdir, batch_size)
        return
    stats = render_images(gen, seed_list, t, batch_size, outdir, grid, identity=identity,
                          **render)
    where = " and ".join(str(p) for p in (outdir, grid) if p is not None)
    skipped = f", skipped {stats['skipped']} already there" if stats["skipped"] else ""
    typer.echo(f"wrote {len(seed_list) - stats['skipped']} image(s) to {where}{skipped} "
               f"({stats['images_per_s']:,.1f} images/s)")


def _on_devices(argv: list[str], text: str, seed_list, outdir: Path | None,
                grid: Path | None, shard: str | None, device: str, progress: bool,
                workers_given: bool, checkpoint: Path, backend: str,
                classes: list[str]) -> None:
    """generate --devices: a process per device on its shard
    (``gantool.sampling.engines.processes``), then the merge of the shards."""
    from gantool.sampling.engines import images_per_seed
    from gantool.sampling.engines.processes import run_on_devices
    from gantool.sampling.shards import finish

    if outdir is None or grid is not None or shard is not None or device != "auto":
        raise GantoolError("--devices renders into --out, each device its shard: leave out "
                           "--grid, --shard and --device")
    whole_list_only("--devices")
    found = parse_devices(text)
    t0 = time.perf_counter()
    total = len(seed_list) * images_per_seed(checkpoint, backend, classes)
    command = ShardCommand.of(argv, keep_workers=workers_given)
    lines = run_on_devices(command, found, outdir, total, progress, workers_given,
                           backend != "trt")
    for line in lines:
        typer.echo(line)
    done = finish(outdir)
    seconds = time.perf_counter() - t0
    typer.echo(f"{outdir}: {done['images']:,} image(s) from {len(found)} device(s) "
               f"({', '.join(found)}) listed in {done['index']} ({seconds:,.0f} s)")


def _on_ray(argv: list[str], seed_list, outdir: Path | None, grid: Path | None,
            shard: str | None, devices: str | None, sweep: str | None, progress: bool,
            workers: int, checkpoint: Path, backend: str, device: str, classes: list[str],
            address: str | None, actors: int | None, shards: int | None,
            actor_cpus: float) -> None:
    """generate --engine ray: the shards drawn by a Ray actor pool
    (``gantool.sampling.engines.ray_actors``), then merged."""
    from gantool.sampling.engines import images_per_seed
    from gantool.sampling.engines.ray_actors import ray_module, run_on_ray
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
    total = len(seed_list) * images_per_seed(checkpoint, backend, classes)
    where = run_on_ray(ShardCommand.of(argv, keep_device=True), outdir, total, address,
                       actors, shards, actor_cpus, progress, workers or None, device != "cpu")
    done = finish(outdir)
    seconds = time.perf_counter() - t0
    typer.echo(f"{outdir}: {done['images']:,} image(s) from {where}, listed in "
               f"{done['index']} ({seconds:,.0f} s)")


@dataclass(frozen=True)
class ShardCommand:
    """This command line as one shard's process runs it (``sampling.engines``): the user's
    arguments less those each shard gets its own value of, then that shard's."""

    args: tuple[str, ...]

    @classmethod
    def of(cls, argv: list[str], keep_device: bool = False,
           keep_workers: bool = False) -> ShardCommand:
        kept = {"--device": keep_device, "--workers": keep_workers}
        return cls(tuple(forward_args(argv, [f for f in PER_SHARD if not kept.get(f)],
                                      ENGINE_FLAGS)))

    def __call__(self, index: int, count: int, device: str | None,
                 workers: int | None) -> list[str]:
        args = [*self.args, "--shard", f"{index}/{count}", "--no-progress"]
        args += ["--device", device] if device is not None else []
        return args + (["--workers", str(workers)] if workers is not None else [])


def forward_args(argv: list[str], valued, flags) -> list[str]:
    """``argv`` without the options ``valued`` (``--name VALUE`` or ``--name=VALUE``) and the
    value-less ``flags``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in valued or name in flags:
            skip = name in valued and "=" not in arg
            continue
        out.append(arg)
    return out


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


def parse_devices(text: str) -> list[str]:
    """``all`` (every visible CUDA GPU), a count of GPUs, or a list (``cuda:0,cuda:1``;
    ``cpu,cpu`` splits the CPU's cores between processes) as device names."""
    import torch

    text = text.strip()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "all" or text.isascii() and text.isdigit():
        want = gpus if text == "all" else int(text)
        if not gpus or want < 1 or want > gpus:
            raise GantoolError(f"--devices {text}: this machine has {gpus} CUDA GPU(s); pass a "
                               "count up to that, or a list such as cpu,cpu")
        return [f"cuda:{i}" for i in range(want)]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    for d in devices:
        if not (d in ("cpu", "cuda") or d.startswith("cuda:") and d[5:].isascii()
                and d[5:].isdigit()):
            raise GantoolError(f"--devices: {d!r} is not cpu, cuda or cuda:N")
        if d.startswith("cuda") and (d == "cuda" and not gpus or d[5:] and int(d[5:]) >= gpus):
            raise GantoolError(f"--devices: {d} is not among this machine's {gpus} CUDA GPU(s)")
    if len(devices) < 1:
        raise GantoolError("--devices needs at least one device, e.g. all or cuda:0,cuda:1")
    return devices


def _per_class(gen, picked: list[int], seeds: list[int], truncation: float | None,
               grid: Path | None, outdir: Path | None, batch_size: int, sweep: str | None,
               render: dict) -> None:
    """Several classes: ``grid`` with one row per class (the same seeds in every row), and
    ``outdir/classNNN`` per class."""
    from gantool.sampling.draw import class_grid, render_classes

    if sweep is not None:
        raise GantoolError("--truncation-sweep draws one class: pass a single --class")
    if grid is not None:
        class_grid(gen, picked, seeds, truncation, grid, batch_size)
        typer.echo(f"wrote a grid of {len(picked)} classes x {len(seeds)} seeds to {grid}")
    if outdir is not None:
        for name, folder, stats in render_classes(gen, picked, seeds, truncation, batch_size,
                                                  outdir, **render):
            typer.echo(f"{name}: wrote {stats['written']} image(s) to {folder}")


def _sweep(gen, seeds: list[int], text: str, grid: Path | None, outdir: Path | None,
           batch_size: int) -> None:
    """The same seeds at several truncations, one grid row per value."""
    from gantool.sampling.draw import sweep_grid

    if grid is None or outdir is not None:
        raise GantoolError("--truncation-sweep writes one grid: pass --grid FILE, not --out")
    values = parse_sweep(text, gen.prior)
    sweep_grid(gen, seeds, values, grid, batch_size)
    labels = ", ".join("none" if t is None else f"{t:g}" for t in values)
    typer.echo(f"wrote {grid}: {len(values)} rows (truncation {labels}) x {len(seeds)} seeds")
