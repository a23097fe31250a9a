"""`gantool train` and `gantool demo`."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from gantool.errors import GantoolError

# CLI flag -> config key; every other value is reachable with --set section.field=value.
FLAG_KEYS = {
    "resolution": "model.resolution", "channels": "model.channels", "nz": "model.nz",
    "ngf": "model.ngf", "ndf": "model.ndf", "prior": "model.prior",
    "steps": "train.steps", "batch_size": "train.batch_size", "lr_g": "train.lr_g",
    "lr_d": "train.lr_d", "labels": "train.labels", "device": "train.device", "amp": "train.amp",
    "seed": "train.seed", "sample_every": "train.sample_every",
    "checkpoint_every": "train.checkpoint_every", "fit": "data.fit", "flip": "data.flip",
    "conditional": "data.class_labels",
    "compile": "train.compile", "cuda_graphs": "train.cuda_graphs",
    "tensorboard": "train.tensorboard",
}

DEMO_STEPS = 600
OUT_OF_TIME = 75  # exit code when --max-time stopped training: EX_TEMPFAIL, "run me again"
DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
                      r"(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """"90m", "11h30m", "1d2h", "45s" or Slurm's "H:MM:SS" / "MM:SS" -> seconds (> 0)."""
    text = text.strip().lower()
    seconds = None
    if ":" in text and all(p.isdigit() for p in text.split(":")) and text.count(":") <= 2:
        seconds = sum(int(p) * 60**i for i, p in enumerate(reversed(text.split(":"))))
    elif text and (m := DURATION.fullmatch(text)):
        seconds = sum(float(v or 0) * unit for v, unit in zip(m.groups(), (86400, 3600, 60, 1)))
    if not seconds:
        raise GantoolError(f"--max-time: cannot read {text!r} as a time budget; write e.g. "
                           "90m, 11h30m, 45s or 11:30:00")
    return seconds


# Help panels of `gantool train`; "preset" marks values whose default comes from the preset.
RUN, DATA, MODEL, OPTIM, HARDWARE, OUTPUT = "Run", "Data", "Model", "Optimisation", \
    "Hardware", "Output"
PRESET = " [dim]\\[default: the preset's][/]"


def _opt(default, *names, help: str, panel: str, metavar: str | None = None, **kw):
    """A train option in its help panel; a None default is the preset's value."""
    flag = any("/" in n for n in names)  # --x/--no-x: no value to show
    return typer.Option(default, *names, help=help + (PRESET if default is None else ""),
                        rich_help_panel=panel, metavar="" if flag else metavar, **kw)


def train(
    preset: str | None = typer.Option(None, help="Named configuration; see --list-presets.",
                                      metavar="NAME", rich_help_panel=RUN),
    config: Path | None = typer.Option(None, help="JSON or YAML file of option overrides.",
                                       metavar="FILE", rich_help_panel=RUN),
    set_: list[str] = typer.Option([], "--set", help="Override any option: section.field="
                                   "value (repeatable).", metavar="KEY=VALUE",
                                   rich_help_panel=RUN),
    resume: str | None = typer.Option(
        None, help="Run directory or checkpoint to continue exactly where it stopped.",
        metavar="RUN_DIR|CKPT", rich_help_panel=RUN),
    name: str | None = typer.Option(None, help="Run name (default: the preset's).",
                                    metavar="NAME", rich_help_panel=RUN),
    list_presets: bool = typer.Option(False, "--list-presets", help="List presets and exit.",
                                      metavar="", rich_help_panel=RUN),
    data: str | None = typer.Option(
        None, help="Image folder, .zip/.tar, IDX file/folder, or builtin:fashion-mnist.",
        metavar="PATH", rich_help_panel=DATA),
    resolution: int | None = _opt(None, help="Square image size, e.g. 28, 64, 1024.",
                                  panel=DATA, metavar="PX"),
    channels: int | None = _opt(None, help="1 (grayscale) or 3 (colour).", panel=DATA,
                                metavar="1|3"),
    fit: str | None = _opt(None, help="Resize fit.", panel=DATA, metavar="crop|pad"),
    flip: bool | None = _opt(None, "--flip/--no-flip", help="Random horizontal flips.",
                             panel=DATA),
    conditional: bool | None = _opt(
        None, "--conditional/--unconditional", panel=DATA,
        help="Read class labels (a sub-folder per class, a dataset.json of [file, class] pairs, "
             "or IDX labels files) and train a class-conditional pair: draw with --class."),
    nz: int | None = _opt(None, help="Latent size.", panel=MODEL, metavar="N"),
    ngf: int | None = _opt(None, help="Generator width.", panel=MODEL, metavar="N"),
    ndf: int | None = _opt(None, help="Discriminator width.", panel=MODEL, metavar="N"),
    prior: str | None = _opt(None, help="Latent prior.", panel=MODEL, metavar="normal|uniform"),
    steps: int | None = _opt(None, help="Total training steps (also on --resume).", panel=OPTIM,
                             metavar="N"),
    batch_size: int | None = _opt(None, help="Images per step.", panel=OPTIM, metavar="N"),
    lr_g: float | None = _opt(None, help="Generator learning rate.", panel=OPTIM, metavar="LR"),
    lr_d: float | None = _opt(None, help="Discriminator learning rate.", panel=OPTIM,
                              metavar="LR"),
    labels: str | None = _opt(None, help="Label smoothing.", panel=OPTIM,
                              metavar="hard|one-sided|two-sided"),
    seed: int | None = _opt(None, help="Run seed (data order, init, noise).", panel=OPTIM,
                            metavar="N"),
    device: str | None = _opt(None, help="Where to train.", panel=HARDWARE,
                              metavar="auto|cpu|cuda"),
    amp: str | None = _opt(None, help="Mixed precision.", panel=HARDWARE,
                           metavar="auto|off|bf16|fp16"),
    compile: bool | None = _opt(None, "--compile/--no-compile",
                                help="torch.compile G and D (compiles for a while).",
                                panel=HARDWARE),
    cuda_graphs: bool | None = _opt(
        None, "--cuda-graphs/--no-cuda-graphs",
        help="Replay each step as one captured CUDA graph (GPU; fastest for small images).",
        panel=HARDWARE),
    out: Path = _opt(Path("runs"), help="Parent folder of run directories.", panel=OUTPUT,
                     metavar="DIR"),
    sample_every: int | None = _opt(None, help="Steps between sample grids (0: each epoch).",
                                    panel=OUTPUT, metavar="STEPS"),
    checkpoint_every: int | None = _opt(None, help="Steps between checkpoints (0: each epoch).",
                                        panel=OUTPUT, metavar="STEPS"),
    tensorboard: bool | None = _opt(
        None, "--tensorboard/--no-tensorboard", panel=OUTPUT,
        help="Also log scalars, sample grids and the configuration for TensorBoard in "
             "RUN/tensorboard (the tensorboard extra); view with: tensorboard --logdir runs."),
    progress: bool = _opt(True, "--progress/--no-progress",
                          help="Show progress: a bar in a terminal, else status lines.",
                          panel=OUTPUT),
    progress_every: float = _opt(
        30.0, min=0.0, metavar="SECONDS", panel=OUTPUT,
        help="Seconds between status lines when stderr is not a terminal (a log file, a job)."),
    max_time: str | None = typer.Option(
        None, metavar="TIME", rich_help_panel=RUN,
        help="Time budget of this session, e.g. 90m, 11h30m or 11:30:00 (also on --resume): "
             f"stop at the first step past it with a checkpoint; exit code {OUT_OF_TIME}."),
) -> None:
    """Train a generator: writes runs/NNNNN-NAME/ (config, metrics, sample grids, checkpoints).

    Examples:

      gantool train --preset fashion-mnist --data builtin:fashion-mnist

      gantool train --preset fashion-mnist --data builtin:fashion-mnist --conditional

      gantool train --preset colour-small --data my_images/ --steps 20000 > train.log 2>&1

      gantool train --resume runs/00001-colour-small --steps 30000

      gantool train --preset few-shot --data my_images/ --resolution 128 --max-time 11h30m
    """
    from gantool import config as C

    given = dict(locals())
    if list_presets:
        _print_presets()
        return
    seconds = parse_duration(max_time) if max_time is not None else None
    flags = {key: v for flag, key in FLAG_KEYS.items()
             if (v := given[flag]) is not None and flag != "steps"}
    if resume is not None:
        extra = sorted(flags) + [f"--{k}" for k in ("preset", "config", "data", "name")
                                 if given[k] is not None] + (["--set"] if set_ else [])
        if extra:
            raise GantoolError(f"--resume continues a run with its own configuration; only "
                               f"--steps and --max-time may change (got {', '.join(extra)})")
        _finish(_run(resume=resume, steps=steps, progress=progress,
                     progress_every=progress_every, max_time=seconds))
        return
    cfg = C.preset_config(preset) if preset else C.RunConfig()
    overrides = C.load_config_file(config) if config else {}
    overrides.update(flags)
    if steps is not None:
        overrides["train.steps"] = steps
    if data is not None:
        overrides["data.path"] = data
    if name is not None:
        overrides["name"] = name
    overrides.update(C.parse_set_options(set_))
    _finish(_run(cfg=C.apply_overrides(cfg, overrides), out=out, progress=progress,
                 progress_every=progress_every, max_time=seconds))


def demo(
    out: Path = typer.Option(Path("runs"), help="Parent folder of the run directory."),
    steps: int = typer.Option(DEMO_STEPS, help="Training steps."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    conditional: bool = typer.Option(
        False, "--conditional", help="Train a class-conditional model on the sample's labels: "
                                     "the grid has one row per garment class."),
) -> None:
    """Train a small Fashion-MNIST generator on the bundled sample and write a sample grid.

    Examples: gantool demo --out runs (a few minutes on 2 CPU cores);
    gantool demo --conditional (then: gantool generate CKPT --class Sandal --grid sandals.png)."""
    from gantool import config as C

    cfg = C.apply_overrides(C.preset_config("fashion-mnist"), {
        "name": "demo-conditional" if conditional else "demo",
        "data.path": "builtin:fashion-mnist", "data.class_labels": conditional,
        "train.steps": steps,
        "train.checkpoint_every": 200, "train.sample_every": 200,
        "train.sample_grid": 100 if conditional else 64})
    _finish(_run(cfg=cfg, out=out, progress=progress))


def _run(**kwargs):
    from gantool.train.loop import run

    return run(**kwargs)


def _finish(result) -> None:
    import os

    quiet = int(os.environ.get("RANK", "0")) != 0  # under torchrun, rank 0 reports
    grids = sorted((result.run_dir / "samples").glob("step-*.png"))
    if result.interrupted:
        saved = (f"checkpoint: {result.checkpoint}" if result.checkpoint
                 else "no step finished since the last checkpoint")
        why = "time budget (--max-time) reached" if result.out_of_time else "interrupted"
        if not quiet:
            typer.echo(f"{why} at step {result.step}; {saved}\n"
                       f"continue with: gantool train --resume {result.run_dir}", err=True)
        raise typer.Exit(OUT_OF_TIME if result.out_of_time else 130)
    if quiet:
        return
    typer.echo(f"trained {result.step} steps ({result.images_per_s:,.0f} images/s) in "
               f"{result.run_dir}")
    typer.echo(f"checkpoint: {result.run_dir / 'checkpoints' / 'last.pt'}")
    if grids:
        typer.echo(f"samples:    {grids[-1]}")


def _print_presets() -> None:
    from rich.console import Console
    from rich.table import Table

    from gantool.config import PRESETS, preset_names, preset_summary

    rows = [preset_summary(n) for n in preset_names()]
    table = Table(*rows[0], title="presets (gantool train --preset NAME; any value can be "
                  "overridden with flags or --set)", title_justify="left")
    for row in rows:
        table.add_row(*row.values())
    table.columns[0].no_wrap = True  # full names, whatever the width: they are what users type
    console = Console()
    if not console.is_terminal:  # a file or a pipe has no width: do not cut anything
        console = Console(width=250)
    console.print(table)
    for name in preset_names():
        console.print(f"[bold]{name}[/]: {PRESETS[name]['_about']}", highlight=False)
