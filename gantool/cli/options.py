"""Options that several commands declare alike (generate, render, video): one declaration
each, so their names, defaults and help read the same everywhere (``panel``: the help panel to
show them in; none: the command's main list), and the parsing of their values that several
commands share: seed lists, truncation sweeps, image encodings, shards, encoder counts."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from gantool.errors import GantoolError

PNG_LEVEL_HELP = ("PNG zlib level 0-9 through Pillow (9: smallest files, slowest). Default: the "
                  "fastest exact writer, fpng where installed (the fastpng extra).")
WORKERS_HELP = "Encoding threads or processes (0: one per core)."


def backend(panel: str | None = None):
    return typer.Option("torch", rich_help_panel=panel, help="Inference backend.")


def device(panel: str | None = None):
    return typer.Option("auto", metavar="auto|cpu|cuda[:N]", rich_help_panel=panel,
                        help="Where the model runs.")


def precision(panel: str | None = None):
    return typer.Option("fp32", rich_help_panel=panel, help="torch: the network's precision.")


def fp16(panel: str | None = None):
    return typer.Option(False, "--fp16", rich_help_panel=panel,
                        help="onnx: model_fp16.onnx of an export folder.")


def ema(panel: str | None = None):
    return typer.Option(True, "--ema/--no-ema", rich_help_panel=panel,
                        help="torch: the EMA weights if present.")


def truncation(panel: str | None = None):
    """--truncation T|none: the largest |z| allowed; ``none`` (the plain prior, also for a
    model trained with a default truncation) arrives as inf (``latent.asked_truncation``)."""
    return typer.Option(None, metavar="T|none", parser=_truncation, rich_help_panel=panel,
                        help="Largest |z| allowed; for an imported StyleGAN, psi toward "
                             "the average w (default: the model's; none: the plain prior).")


def _truncation(text: str) -> float:
    if str(text).strip().lower() == "none":
        return math.inf
    try:
        if not str(text).isascii():  # float() reads other scripts' digits; Typer's numbers not
            raise ValueError(text)
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number or none") from None


def shard(panel: str | None = None):
    return typer.Option(
        None, "--shard", metavar="I/N", rich_help_panel=panel,
        help="Draw block I of N of the seed list into OUT/shard-IIIII-of-NNNNN (default: the "
             "job's, under torchrun, a Slurm array or a Kubernetes Indexed Job with "
             "GANTOOL_SHARDS; 0/1: the whole list). gantool merge-shards OUT indexes them.")


def layout(panel: str | None = None):
    return typer.Option("flat", rich_help_panel=panel,
                        help="How --out holds the images: all in the folder; subdirs: a "
                             "sub-folder per thousand seeds (000000/, 001000/, ...); webdataset: "
                             "tar shards 000000.tar, ... (an image and a .json per seed).")


def tar_images(panel: str | None = None):
    return typer.Option(10_000, min=1, rich_help_panel=panel,
                        help="--layout webdataset: images per tar.")


def seconds(default: float, help: str, zero: bool = False):
    """A positive (``zero``: or zero), finite number of seconds (click's FloatRange lets nan
    through)."""
    def check(value: float) -> float:
        if not (math.isfinite(value) and (value > 0 or zero and value == 0)):
            kind = "zero or a positive" if zero else "a positive"
            raise typer.BadParameter(f"must be {kind} number of seconds, got {value}")
        return value

    return typer.Option(default, help=help, callback=check)


def parse_seed_list(text: str):
    """--seeds as a lazy seed list, or a one-line error."""
    from gantool.latent import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as e:
        raise GantoolError(f"--seeds: {e}") from None


def parse_sweep(text: str, prior: str) -> list[float | None]:
    """--truncation-sweep's values (``none``: the plain prior), each one the prior can draw."""
    from gantool.latent import validate_truncation

    values: list[float | None] = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        try:
            if not item.isascii():  # float() reads other scripts' digits; the CLI does not
                raise ValueError("not a number in digits 0-9")
            t = None if item.lower() == "none" else float(item)
            validate_truncation(t, prior)
        except ValueError as e:
            raise GantoolError(f"--truncation-sweep {item!r}: {e}") from None
        values.append(t)
    if not values:
        raise GantoolError("--truncation-sweep needs at least one value, e.g. 0.5,1")
    return values


def image_encoding(fmt: str, png_level: int | None, quality: int):
    """The --format/--png-level/--quality options as one Encoding, or a one-line error."""
    from gantool.sampling.images import Encoding

    try:
        return Encoding(fmt.lower(), png_level, quality)
    except ValueError as e:
        raise GantoolError(f"--format: {e}") from None


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
        shard = shard_from(flag, name="--shard")
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
