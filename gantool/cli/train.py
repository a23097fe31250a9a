"""`gantool train` and `gantool demo`.

The run configuration's options (``gantool.config``'s schema) become train's flags here: which
options have one, how each is spelt, what its value is called and which help panel shows it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from gantool.cli.spelling import spelt
from gantool.errors import ConfigError, GantoolError

DEMO_STEPS = 600
OUT_OF_TIME = 75  # exit code when --max-time stopped training: EX_TEMPFAIL, "run me again"

# The run options `gantool train` has a flag for (the help lists them in the schema's order). Each
# flag is the option's name (model.nz: --nz, train.lr_g: --lr-g; a switch --flip/--no-flip)
# unless SPELLINGS spells it; its value is called as METAVARS says, else by its choices, or N
# (a whole number), X (a number) or TEXT. The other options are set with --set or --config.
TRAIN_FLAGS = (
    "data.path", "data.fit", "data.flip", "data.class_labels",
    "model.resolution", "model.channels", "model.nz", "model.ngf", "model.ndf", "model.prior",
    "train.steps", "train.batch_size", "train.lr_g", "train.lr_d", "train.seed",
    "train.labels", "train.device", "train.amp", "train.compile", "train.cuda_graphs",
    "train.sample_every", "train.checkpoint_every", "train.tensorboard",
)
SPELLINGS = {"data.path": "--data", "data.class_labels": "--conditional/--unconditional"}
METAVARS = {"data.path": "PATH", "model.resolution": "PX", "train.lr_g": "LR", "train.lr_d": "LR",
            "train.sample_every": "STEPS|TIME", "train.checkpoint_every": "STEPS"}
# the help panel (and the options reference's section) of each group of the schema
PANELS = {"ModelConfig": "Model", "DataConfig": "Data", "Schedule": "Optimisation",
          "Losses": "Loss", "Hardware": "Hardware", "Output": "Output",
          "Evaluation": "Evaluation", "Guard": "Guard"}


@dataclass(frozen=True)
class ConfigOption:
    """A run option as `gantool train` spells it: the schema's ``option``, its ``flag`` (None:
    set with --set or a config file only), what its value is called (``metavar``) and its help
    panel; the declaration's parts (``key``, ``name``, ``help``, ...) read through."""

    option: Any  # gantool.config.Option
    flag: str | None
    metavar: str
    panel: str

    def __getattr__(self, name: str) -> Any:
        if name == "option":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.option, name)

    @property
    def help(self) -> str:
        """The schema's help, the options it names (``{resume}``) spelt as flags."""
        return spelt(self.option.help, ())


def config_options() -> list[ConfigOption]:
    """Every option of the run configuration, in the schema's order, with its CLI spelling."""
    from gantool import config as C

    return [_spelt(o) for o in C.options()]


def config_flags() -> list[ConfigOption]:
    """The configuration's options that ``gantool train`` has a flag for."""
    return [o for o in config_options() if o.flag]


def _spelt(o) -> ConfigOption:
    flag = None
    if o.key in TRAIN_FLAGS:
        dashed = o.name.replace("_", "-")
        flag = SPELLINGS.get(o.key) or (f"--{dashed}/--no-{dashed}" if o.type is bool
                                        else f"--{dashed}")
    metavar = METAVARS.get(o.key) or ("|".join(map(str, o.choices)) or
                                      {int: "N", float: "X", bool: ""}.get(o.type, "TEXT"))
    return ConfigOption(o, flag, metavar, PANELS[o.group])


def parse_duration(text: str) -> float:
    """"90m", "11h30m", "1d2h", "45s" or Slurm's "H:MM:SS" / "MM:SS" -> seconds (> 0)."""
    from gantool.config import duration

    seconds = duration(text)
    if not seconds:
        raise GantoolError(f"--max-time: cannot read {text.strip().lower()!r} as a time budget; "
                           "write e.g. 90m, 11h30m, 45s or 11:30:00")
    return seconds


# help panels of the options that are not the run's configuration (those are in their groups'
# panels); "preset" marks values whose default comes from the preset
RUN, OUTPUT = "Run", "Output"
PRESET = " [dim]\\[default: the preset's][/]"


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
    out: Path = typer.Option(Path("runs"), help="Parent folder of run directories.",
                             rich_help_panel=OUTPUT, metavar="DIR"),
    progress: bool = typer.Option(True, "--progress/--no-progress", metavar="",
                                  help="Show progress: a bar in a terminal, else status lines.",
                                  rich_help_panel=OUTPUT),
    progress_every: float = typer.Option(
        30.0, min=0.0, metavar="SECONDS", rich_help_panel=OUTPUT,
        help="Seconds between status lines when stderr is not a terminal (a log file, a job)."),
    max_time: str | None = typer.Option(
        None, metavar="TIME", rich_help_panel=RUN,
        help="Time budget of this session, e.g. 90m, 11h30m or 11:30:00 (also on --resume): "
             f"stop at the first step past it with a checkpoint; exit code {OUT_OF_TIME}."),
    **values,
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

    if list_presets:
        _print_presets()
        return
    seconds = parse_duration(max_time) if max_time is not None else None
    given = [(o, v) for o in config_flags() if (v := values[o.name]) is not None]
    if resume is not None:
        _finish(_run(resume=resume, changes=_resume_changes(given, set_, preset, config, name),
                     progress=progress, progress_every=progress_every, max_time=seconds))
        return
    cfg = _preset_config(preset) if preset else C.RunConfig()
    overrides = C.load_config_file(config) if config else {}
    overrides.update({o.key: v for o, v in given})
    if name is not None:
        overrides["name"] = name
    overrides.update(_set_options(set_))
    _finish(_run(cfg=C.apply_overrides(cfg, overrides), out=out, progress=progress,
                 progress_every=progress_every, max_time=seconds,
                 fit_batch=not _batch_named(overrides)))


def _preset_config(name: str):
    """The preset's configuration; an unknown name says where the names are listed."""
    from gantool import config as C

    try:
        return C.preset_config(name)
    except ConfigError as e:
        if name in C.PRESETS:
            raise
        raise ConfigError(f"{e}; see --list-presets") from None


def _set_options(items: list[str]) -> dict[str, str]:
    """The ``--set key=value`` items as overrides."""
    from gantool.config import parse_set_options

    out = {}
    for item in items:
        try:
            out.update(parse_set_options([item]))
        except ConfigError:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set "
                              "train.lr_g=1e-4)") from None
    return out


def _resume_changes(given: list, set_: list[str], preset, config, name) -> dict:
    """What ``--resume`` changes (``RESUME_CHANGES``, by flag or --set), or one line naming
    what it may not."""
    from gantool.config.parse import resolve_key
    from gantool.train.loop import RESUME_CHANGES

    flags = {o.key: o.flag for o in config_flags()}
    changes = {o.key: v for o, v in given}
    for key, value in _set_options(set_).items():
        changes[".".join(resolve_key(key))] = value
    extra = [flags.get(k, f"--set {k}") for k in changes if k not in RESUME_CHANGES]
    extra += [f"--{k}" for k, v in (("preset", preset), ("config", config), ("name", name))
              if v is not None]
    if extra:
        may = ", ".join(flags.get(k, f"--set {k}") for k in RESUME_CHANGES)
        raise GantoolError(f"--resume continues a run with its own configuration; only "
                           f"--max-time, {may} may change (got {', '.join(extra)})")
    return changes


def _batch_named(overrides: dict) -> bool:
    """Whether the user named the batch size (a flag, --set or the config file; a table of
    them too): else it is the preset's, which a smaller dataset may lower."""
    from gantool.config.parse import resolve_key

    return any(key != "name" and resolve_key(key) in (("train", "batch_size"),
                                                      ("train", "batch_sizes"))
               for key in overrides)


def _with_config_flags(command):
    """``command`` with one keyword parameter per configuration flag in its signature, which is
    what Typer reads: each a ``typer.Option`` in its group's help panel, None when not given
    (the value then comes from the preset, the config file or the schema's default)."""
    from rich.markup import escape

    from gantool.config import preset_sets

    fixed = [p.replace(kind=p.KEYWORD_ONLY) for p in inspect.signature(command).parameters.values()
             if p.kind is not p.VAR_KEYWORD]
    derived, flagged = [], config_flags()
    for o in flagged:
        shown = "" if o.default in ("", None) else f" [dim]\\[default: {_shown(o.default)}][/]"
        option = typer.Option(None, o.flag, rich_help_panel=o.panel, metavar=o.metavar,
                              help=escape(o.help) + (PRESET if preset_sets(o.key) else shown))
        derived.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY,
                                         default=option, annotation=o.type | None))
    clash = {p.name for p in fixed} & {p.name for p in derived}
    assert not clash, f"train's own parameters {clash} have the names of config options"
    unknown = set(TRAIN_FLAGS) - {o.key for o in flagged}
    assert not unknown, f"TRAIN_FLAGS names {unknown}, which the schema does not declare"
    at = [p.name for p in fixed].index("out")  # after the Run panel's options
    command.__signature__ = inspect.Signature(fixed[:at] + derived + fixed[at:])
    return command


def _shown(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


train = _with_config_flags(train)


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

    return run(run_line=_run_line, **kwargs)


def _run_line(run_dir: Path) -> str:
    """The line that names a new run's folder, and how to go on if it stops."""
    return f"run: {run_dir} (if stopped: gantool train --resume {run_dir})"


def _finish(result) -> None:
    """Say how training ended, where its files are and the commands that look at them; exit
    with the code of a stop (75 for the time budget, 130 Ctrl-C, 143 SIGTERM)."""
    import os
    import signal

    quiet = int(os.environ.get("RANK", "0")) != 0  # under torchrun, rank 0 reports
    term = result.stopped_by == signal.SIGTERM
    if result.interrupted:
        saved = (f"checkpoint: {result.checkpoint}" if result.checkpoint
                 else "no step finished since the last checkpoint")
        why = ("time budget (--max-time) reached" if result.out_of_time else
               "terminated (SIGTERM)" if term else "interrupted")
        if not quiet:
            typer.echo(f"{why} at step {result.step}; {saved}\n"
                       + "\n".join(_next_steps(result)), err=True)
        raise typer.Exit(OUT_OF_TIME if result.out_of_time else 143 if term else 130)
    if not quiet:
        typer.echo(f"trained {result.step} steps ({result.images_per_s:,.0f} images/s) in "
                   f"{result.run_dir}\ncheckpoint: {result.run_dir / 'checkpoints' / 'last.pt'}"
                   "\n" + "\n".join(_next_steps(result)))
    if result.stopped_by is not None:  # a stop asked for while the last files were written
        raise typer.Exit(143 if term else 130)


def _next_steps(result) -> list[str]:
    """The newest sample grid, and the commands (with the run's paths, called the way this
    gantool was) that go on: resume, a grid of seeds, the explorer, the report."""
    from shlex import quote

    run, gantool = result.run_dir, _program()
    grids = sorted((run / "samples").glob("step-*.png"))
    last = run / "checkpoints" / "last.pt"
    lines = [f"samples:    {grids[-1]} (newest of {len(grids)})"] if grids else []
    if result.interrupted:
        lines.append(f"continue with: {gantool} train --resume {quote(str(run))}")
    if last.is_file():
        ckpt = quote(str(last))
        seeds = "--class all --seeds 0-7" if result.classes else "--seeds 0-63"
        lines += ["look at it:",
                  f"  {gantool} generate {ckpt} {seeds} --grid out/grid.png    # a grid of seeds",
                  f"  {gantool} explore {ckpt}    # seeds, truncation and walks in a browser",
                  f"  {gantool} report {quote(str(run))}    # curves and samples over time"]
    return lines


def _program() -> str:
    """How to call gantool again the way this one was called: ``gantool`` where that is on the
    PATH (or not a script here), else the script's path as typed (``.venv/bin/gantool``)."""
    import shutil
    import sys
    from shlex import quote

    script = Path(sys.argv[0])
    if script.name != "gantool" or (shutil.which("gantool") and Path(
            shutil.which("gantool")).resolve() == script.resolve()):
        return "gantool"
    return quote(sys.argv[0])


def _print_presets(width: int = 80) -> None:
    """Each preset as a few lines that fit ``width`` columns: its name, its key values, what
    it is for and where its values come from."""
    from textwrap import fill

    from gantool.config import PRESETS, preset_names, preset_summary

    lines = ["presets (gantool train --preset NAME; flags or --set override any value)"]
    label = {"G / D": "G/D", "lr G / D": "lr G/D"}
    for name in preset_names():
        facts = preset_summary(name)
        facts.pop("preset")
        tricks = facts.pop("tricks")
        summary = ", ".join(f"{label.get(k, k)} {v}" if k not in ("size", "steps") else
                            f"{v} steps" if k == "steps" else v for k, v in facts.items())
        lines += ["", name, fill(summary + (f", {tricks}" if tricks != "-" else ""), width,
                                 break_on_hyphens=False,
                                 initial_indent="  ", subsequent_indent="  "),
                  fill(spelt(PRESETS[name].about, ()), width, initial_indent="  ",
                       subsequent_indent="  ")]
        if PRESETS[name].budget:
            lines.append(fill(f"for your time: {PRESETS[name].budget}", width,
                              initial_indent="  ", subsequent_indent="    "))
        lines.append(fill(f"source: {PRESETS[name].source}", width, initial_indent="  ",
                          subsequent_indent="    "))
    typer.echo("\n".join(lines))
