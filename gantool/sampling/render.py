"""Draw images for many seeds through any backend: to files and/or a grid, at scale.

Generation and encoding overlap: while the backend draws batch k+1, a pool of threads (one per
core by default; Pillow's encoders and file writes release the GIL) encodes and writes batch k.
Every file is written atomically (temp file and rename; the folder is fsynced once per batch
rather than every file), so an interrupted render leaves only whole files, and a
render into a folder that already holds some of the seeds skips them (resume). ``manifest.jsonl``
in the folder lists seed, truncation, file and backend for every image written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gantool.errors import GantoolError, PartialBatch
from gantool.fileio import fsync_dir
from gantool.sampling.images import IMAGE_FORMATS, save_grid, save_image, seed_filename
from gantool.sampling.latent import batched

MANIFEST = "manifest.jsonl"


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def render_seeds(generator, seeds: Sequence[int], truncation: float | None, batch_size: int,
                 outdir: Path | None = None, grid: Path | None = None, fmt: str = "png",
                 workers: int | None = None, backend: str = "", console: Console | None = None,
                 progress: bool = True) -> dict:
    """Write ``outdir/seedNNNNNN.<fmt>`` per seed and/or one ``grid`` image.

    ``generator`` is any object with the Generator protocol of ``gantool.backends``. Returns
    counts: ``written``, ``skipped`` (already on disk), ``failed``, ``seconds``,
    ``images_per_s``. A remote generator may fail some seed ranges (``PartialBatch``): they are
    reported on the console and counted, the images that arrived are written, and the render
    goes on; running it again retries just the missing seeds.
    """
    if fmt not in IMAGE_FORMATS:
        raise GantoolError(f"unknown image format {fmt!r}; choose {', '.join(IMAGE_FORMATS)}")
    todo = list(seeds)
    skipped = 0
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        _check_manifest(outdir, truncation, generator.prior)
        if grid is None:  # a grid needs every image; otherwise existing files are done
            todo = [s for s in todo if not (outdir / seed_filename(s, fmt)).exists()]
            skipped = len(seeds) - len(todo)
    console = console or Console(stderr=True)
    keep: list[np.ndarray] | None = [] if grid is not None else None
    pool = ThreadPoolExecutor(workers or default_workers()) if outdir is not None else None
    pending: list[Future] = []
    bar = Progress(TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console,
                   disable=not progress)
    t0 = time.perf_counter()
    written = done = failed = 0
    row = {"truncation": truncation, "prior": generator.prior, "backend": backend}
    try:
        with bar:
            task = bar.add_task("generate", total=len(todo), rate="")
            for chunk in batched(todo, batch_size):
                asked = len(chunk)
                try:
                    images = generator.generate(chunk, truncation)  # (B, H, W, C) uint8
                except PartialBatch as e:
                    if keep is not None:
                        raise  # a grid needs every image
                    for lo, hi, reason in e.failures:
                        console.print(f"[red]seeds {lo}-{hi} failed:[/] {reason}")
                    failed += len(chunk) - len(e.seeds)
                    chunk, images = e.seeds, e.images
                if keep is not None:
                    keep.append(images)
                if pool is not None:
                    written += _drain(pending, outdir, row)  # batch k's files, while k+1 ran
                    pending = [pool.submit(_write, images[i], outdir / seed_filename(s, fmt), s)
                               for i, s in enumerate(chunk)]
                done += asked
                rate = done / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, completed=done, rate=f"{rate:,.1f} img/s")
            written += _drain(pending, outdir, row)
    finally:
        if pool is not None:  # interrupted: finish running writes, list the whole files
            pool.shutdown(wait=True, cancel_futures=True)
            finished = [f for f in pending if not f.cancelled() and f.exception() is None]
            _drain(finished, outdir, row)
    if keep is not None:
        save_grid(np.concatenate(keep) if keep else np.zeros((0, 1, 1, 1), np.uint8), grid)
    seconds = time.perf_counter() - t0
    return {"written": written, "skipped": skipped, "failed": failed, "seconds": seconds,
            "images_per_s": len(todo) / seconds if seconds > 0 else 0.0}


def _write(image: np.ndarray, path: Path, seed: int) -> tuple[int, str]:
    save_image(image, path, durable=False)  # atomic; one fsync of the folder per batch instead
    return seed, path.name


def _drain(pending: list[Future], outdir: Path, row: dict) -> int:
    """Wait for a batch's writes, then record them in the manifest (only whole files)."""
    if not pending:
        return 0
    done = [f.result() for f in pending]
    fsync_dir(outdir)
    with (outdir / MANIFEST).open("a") as f:
        for seed, name in done:
            f.write(json.dumps({"seed": seed, "file": name, **row}) + "\n")
    pending.clear()
    return len(done)


def _check_manifest(outdir: Path, truncation: float | None, prior: str) -> None:
    """Resuming into a folder rendered at another truncation or prior would mix two sets."""
    path = outdir / MANIFEST
    if not path.is_file():
        return
    with path.open() as f:
        first = f.readline()
    try:
        before = json.loads(first)
        was = (before["truncation"], before["prior"])
    except (json.JSONDecodeError, KeyError, TypeError):
        return
    if was != (truncation, prior):
        raise GantoolError(f"{outdir} holds images rendered with truncation {was[0]}, prior "
                           f"{was[1]}; render truncation {truncation}, prior {prior} into "
                           "another --outdir")
