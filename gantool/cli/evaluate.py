"""`gantool eval`: FID/KID of a checkpoint against a dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer

from gantool.cli.choices import ClassMix
from gantool.errors import GantoolError
from gantool.fileio import atomic_write, check_writable


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
    per_class: bool = typer.Option(
        False, "--per-class", help="A conditional model: also each class against the real "
        "images of that class (NUM / classes images each; the data's labels)."),
    class_mix: ClassMix = typer.Option(
        "data", help="A conditional model's classes: in its training data's proportions (as "
        "its checkpoint records them), or uniform (seed s draws class s mod K)."),
) -> None:
    """Frechet Inception Distance and Kernel Inception Distance (lower is better).

    Examples:

      gantool eval runs/00001-demo --num 1000   (real images: the run's data)

      gantool eval runs/00002-fashion-mnist --per-class   (a conditional model, class by class)
    """
    from rich.console import Console

    from gantool.backends import load_backend
    from gantool.data import load_dataset
    from gantool.device import pick_device
    from gantool.progress import StepProgress
    from gantool.sampling.draw import resolve_truncation

    chosen = _metrics(metrics)
    if json_out is not None:  # before the evaluation, not after it: a bad path fails now
        check_writable(json_out.parent)
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        raise GantoolError(f"checkpoint {checkpoint} does not exist")
    dev = pick_device(device)
    gen = load_backend("torch", str(checkpoint), device=str(dev))
    t = resolve_truncation(gen, truncation)
    if data is None:
        data = gen.data_path
        if not data:
            raise GantoolError(f"{checkpoint} does not record its training data; pass --data")
        typer.echo(f"data: {data} (the run's; --data picks another)", err=True)
    if per_class and not gen.classes:
        raise GantoolError("--per-class: this model is not conditional (trained without "
                           "--conditional); drop --per-class")
    real = load_dataset(data, gen.resolution, gen.channels, progress=progress, labels=per_class)
    if len(real) < 2:
        raise GantoolError(f"{data} holds {len(real)} image; FID and KID compare sets of at "
                           "least 2 (use a few hundred or more for a meaningful score)")
    from gantool.metrics.evaluate import score_generator

    done = [0]  # images through the feature extractor, real (unless cached) and generated

    def advance(n: int) -> None:
        done[0] += n
        bar.advance(done[0], {"img/s": f"{done[0] / (time.perf_counter() - t0):,.1f}"})

    bar = StepProgress(Console(stderr=True), "eval", num + min(num, len(real)),
                       enabled=progress, short=("img/s",))
    classes = _classes(gen, class_mix, num)
    t0 = time.perf_counter()
    with bar:
        result = score_generator(gen, real.images, chosen, num, batch_size, t, str(dev),
                                 on_batch=advance, classes=classes)
    if gen.classes:
        result["class_mix"] = class_mix if classes is not None else "uniform"
    _say(result)
    if per_class:
        result["per_class"] = _per_class(gen, real, chosen, num, batch_size, t, str(dev))
    if json_out is not None:
        with atomic_write(json_out) as f:
            f.write((json.dumps({"checkpoint": str(checkpoint), "data": data, **result},
                                indent=2) + "\n").encode())


def _metrics(text: str) -> list[str]:
    from gantool.metrics.evaluate import METRICS

    chosen = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METRICS]
    if bad or not chosen:
        raise GantoolError(f"--metrics: unknown {bad[0] if bad else 'empty list'!r}; choose "
                           f"from {', '.join(METRICS)}")
    return chosen


def _classes(gen, mix: str, num: int) -> list[int] | None:
    """The class of each generated seed (None: s mod K), said on stderr for a conditional
    model."""
    from gantool.metrics.evaluate import class_mix

    if not gen.classes:
        return None
    counts = getattr(gen, "class_counts", ())
    if mix == "uniform" or not counts:
        why = "" if mix == "uniform" else " (its checkpoint records no class counts)"
        typer.echo(f"classes: uniform, seed s draws class s mod {len(gen.classes)}{why}",
                   err=True)
        return None
    share = sorted(zip(counts, gen.classes), reverse=True)[:3]
    total = sum(counts)
    typer.echo("classes: in the training data's proportions ("
               + ", ".join(f"{name} {n / total:.0%}" for n, name in share)
               + (", ..." if len(counts) > 3 else "") + "; --class-mix uniform for s mod K)",
               err=True)
    return class_mix(num, counts)


def _say(result: dict) -> None:
    note = " (real statistics from the cache)" if result["real_cached"] else ""
    typer.echo(f"{result['num_fake']} generated vs {result['num_real']} real images{note}, "
               f"{result['images_per_s']:.1f} images/s")
    if "fid" in result:
        typer.echo(f"FID {result['fid']:.2f}")
    if "kid" in result:
        from gantool.metrics.fid import kid_text

        typer.echo(f"KID {kid_text(result['kid'], result['kid_std'], result['num_fake'])}")


def _per_class(gen, real, metrics: list[str], num: int, batch_size: int,
               truncation: float | None, device: str) -> dict[str, dict]:
    """eval --per-class: every class of the model against the real images with its name, a
    table on the terminal; class name -> results."""
    from gantool.backends import FixedClass
    from gantool.metrics.evaluate import score_per_class

    index = {name.lower(): i for i, name in enumerate(real.classes)}
    missing = [n for n in gen.classes if n.lower() not in index]
    if missing:
        raise GantoolError(f"--per-class: the data has no class {missing[0]!r} (its classes: "
                           f"{', '.join(real.classes)}); pass the labelled data it was trained on")
    labels = np.full(len(real.labels), -1)  # the data's class indices as the model's
    for i, name in enumerate(gen.classes):
        labels[real.labels == index[name.lower()]] = i
    each = max(2, num // len(gen.classes))
    results = score_per_class([FixedClass(gen, i) for i in range(len(gen.classes))],
                              real.images, labels, gen.classes, metrics, each, batch_size,
                              truncation, device)
    typer.echo(f"per class ({each} generated vs up to {each} real images each; FID is biased "
               "upwards at small n: compare the classes with one another)")
    for name, r in results.items():
        figures = "  ".join(f"{k.upper()} {r[k]:.{2 if k == 'fid' else 5}f}" for k in metrics)
        typer.echo(f"  {name:<24} {figures}  ({r['num_real']} real)")
    return results
