"""Options that several commands declare alike (generate, video): one declaration each, so
their names, defaults and help read the same everywhere. ``panel``: the help panel to show
them in (none: the command's main list)."""

from __future__ import annotations

import math

import typer


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
