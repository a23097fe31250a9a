"""The render pipeline: images for many seeds through any backend, to files and/or a grid, at
scale (``gantool.sampling.draw`` picks it or the tar writer by layout).

The backend draws batch k+1 while ``ImageWriter`` (``sampling/writer.py``) encodes and writes
the batches before it on every core, so the slower of the two stages runs flat out and memory
stays bounded by the writer's slots, whatever the number of seeds. Every file is written
atomically (``gantool.fileio.atomic_write``), so an interrupted render leaves only whole files;
a render into a folder that already holds some of the seeds skips them (resume), lists any that
an interruption left out of ``manifest.jsonl`` and removes leftover temp files. The manifest
lists seed, truncation, file and backend for every image written.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from rich.console import Console

from gantool.errors import GantoolError, OptionError, PartialBatch
from gantool.fileio import folder_lock
from gantool.latent import Seeds, batched, check_seeds
from gantool.progress import StepProgress
from gantool.sampling.images import Encoding, save_grid, seed_path
from gantool.sampling.writer import MANIFEST, ImageWriter

GRID_MAX_IMAGES = 4096
GRID_MAX_BYTES = 2**31  # a grid is held whole in memory, and then once more as one image
STALE_TMP_S = 600  # a temp file this old is what an interrupted render left behind
# files in the folder, in a sub-folder per thousand seeds, or in tar shards (sampling/tars.py)
LAYOUTS = ("flat", "subdirs", "webdataset")
SUBDIR = re.compile(r"\d{6,}")
LEGACY = ("format", "weights_sha256")  # what the rows of an older gantool's folder lack


def check_drawable(seeds: Sequence[int], prior: str) -> None:
    """An OptionError (seeds) for a seed list ``prior`` cannot draw in full."""
    try:
        check_seeds(seeds, prior)
    except ValueError as e:
        raise OptionError("seeds", str(e)) from None


def render_seeds(generator, seeds: Sequence[int], truncation: float | None, batch_size: int,
                 outdir: Path | None = None, grid: Path | None = None,
                 encoding: Encoding | None = None, workers: int | None = None,
                 depth: int | None = None, parallel: str = "auto", backend: str = "",
                 console: Console | None = None, progress: bool = True, stem: str = "seed",
                 identity: dict | None = None, label: str = "generate",
                 layout: str = "flat", sink=None) -> dict:
    """Write ``outdir/seedNNNNNN.<fmt>`` per seed and/or one ``grid`` image.

    ``generator`` is any object with the Generator protocol of ``gantool.backends``;
    ``encoding`` the format and its knobs (default: PNG through the fastest exact writer);
    ``workers``/``depth``/``parallel``: see ``ImageWriter``. Returns counts: ``written``,
    ``skipped`` (already on disk), ``failed``, ``seconds``, ``images_per_s``. A remote generator
    may fail some seed ranges (``PartialBatch``): they are reported on the console and counted,
    the images that arrived are written, and the render goes on; running it again retries just
    the missing seeds.

    ``stem`` names the files and the manifest's key (``frame``: a video's numbered frames, the
    "seeds" being frame numbers); ``identity`` adds what else names the images to every
    manifest row (a walk's seeds), so that a resume into a folder of other images is refused.
    A generator's ``shape`` (H, W, C), where it has one, is its image size (a grid of walks).
    ``layout`` ``subdirs`` puts each file in the sub-folder of its thousand (``seed_path``);
    a ``sink`` (``ImageWriter``'s) takes the encoded images instead of files (tars: the caller
    resumes, so every seed given is drawn).
    """
    encoding = encoding or Encoding()
    check_drawable(seeds, generator.prior)
    shape = getattr(generator, "shape", None) or (
        generator.resolution, generator.resolution, generator.channels)
    if grid is not None:
        check_grid_size(len(seeds), shape)
    row = manifest_row(truncation, generator.prior, identity, layout, backend,
                       getattr(generator, "weights_sha256", ""), encoding.fmt)
    subdirs = layout == "subdirs"
    with ExitStack() as held:
        if outdir is not None:  # one writer per folder: its settings checked under the lock
            outdir.mkdir(parents=True, exist_ok=True)
            held.enter_context(folder_lock(outdir, (
                f"another gantool process (pid {{pid}}) is writing images into {outdir}; wait "
                "for it to finish or stop it, or write into another folder")))
        todo, skipped = _todo(seeds, outdir, grid is None and sink is None, encoding.fmt, row,
                              stem, subdirs, sink)
        total = len(seeds) - skipped
        batch_size = max(1, min(batch_size, total))  # no batch (nor image slot) beyond the work
        console = console or Console(stderr=True)
        keep: list[np.ndarray] | None = [] if grid is not None else None
        writer = (ImageWriter(outdir, encoding, batch_size, shape, workers, depth, parallel, row,
                              stem, subdirs, sink) if outdir is not None and total else None)
        bar = StepProgress(console, label, total, enabled=progress, short=("img/s",))
        t0 = time.perf_counter()
        done = failed = 0
        try:
            with bar:
                for chunk in batched(todo, batch_size):
                    asked = len(chunk)
                    try:
                        # (B, H, W, C) uint8
                        images = _draw(generator, chunk, truncation, writer)
                    except PartialBatch as e:
                        if keep is not None:
                            raise  # a grid needs every image
                        for lo, hi, reason in e.failures:
                            bar.print(f"[red]seeds {lo}-{hi} failed:[/] {reason}")
                        failed += len(chunk) - len(e.seeds)
                        chunk, images = e.seeds, e.images
                    if keep is not None:
                        keep.append(images.copy() if writer is not None else images)
                    if writer is not None:
                        writer.commit(chunk, images)
                    done += asked
                    rate = done / max(time.perf_counter() - t0, 1e-9)
                    bar.advance(done, {"img/s": f"{rate:,.1f}"})
                if writer is not None:
                    writer.close()
        finally:
            if writer is not None:  # interrupted: running writes finish and are listed
                writer.abort()
        if keep is not None:
            save_grid(np.concatenate(keep) if keep else np.zeros((0, 1, 1, 1), np.uint8), grid)
    seconds = time.perf_counter() - t0
    return {"written": writer.written if writer else 0, "skipped": skipped, "failed": failed,
            "seconds": seconds, "images_per_s": done / seconds if seconds > 0 else 0.0}


def manifest_row(truncation: float | None, prior: str, identity: dict | None, layout: str,
                 backend: str, weights: str = "", fmt: str = "") -> dict:
    """What every manifest row of a render holds besides its seed and file: its settings, the
    layout (only where it is not flat, so older folders read as they were written), the image
    format and the model (its weights' SHA-256, ``models.checkpoint.weights_sha256``)."""
    if layout not in LAYOUTS:
        raise GantoolError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    return {"truncation": truncation, "prior": prior, **(identity or {}),
            **({"layout": layout} if layout != "flat" else {}),
            **({"format": fmt} if fmt else {}),
            **({"weights_sha256": weights} if weights else {}), "backend": backend}


def _todo(seeds: Sequence[int], outdir: Path | None, resume: bool, fmt: str, row: dict,
          stem: str, subdirs: bool = False, sink=None) -> tuple[Iterable[int], int]:
    """The seeds still to draw (lazily: memory does not grow with the seed count) and how many
    ``outdir`` already holds; refuses a folder of other images. ``resume``: whether existing
    files count as done (not for a grid, which needs every image); a ``sink`` lists what a
    stop left unlisted (``TarSink.recover``)."""
    if outdir is None:
        return seeds, 0
    check_manifest(outdir, row)
    if sink is not None:
        sink.recover()
    finished = _resume(outdir, fmt, row, stem, subdirs) if resume else set()
    if not finished:
        return seeds, 0
    return (s for s in seeds if s not in finished), _count_done(seeds, finished)


def _draw(generator, seeds, truncation, writer: ImageWriter | None) -> np.ndarray:
    """One batch of images; straight into a writer slot where the backend can do that."""
    if writer is None or not hasattr(generator, "generate_into"):
        return generator.generate(seeds, truncation)
    out = writer.reserve(len(seeds))  # waits only while every slot is being written
    generator.generate_into(seeds, truncation, out)
    return out


def check_grid_size(count: int, shape: tuple[int, int, int]) -> None:
    """A one-line error when a grid of ``count`` images of ``shape`` would not fit in memory."""
    nbytes = count * int(np.prod(shape))
    if count > GRID_MAX_IMAGES or nbytes > GRID_MAX_BYTES:
        raise OptionError(
            "grid", f"a grid of {count:,} images of {shape[0]} px ({nbytes / 2**30:.1f} GiB) is "
            f"too large to hold (at most {GRID_MAX_IMAGES:,} images and "
            f"{GRID_MAX_BYTES / 2**30:.0f} GiB); write them to a folder, and a grid of a few",
            see="out")


def _count_done(seeds: Sequence[int], done: set[int]) -> int:
    """How many items of ``seeds`` are in ``done``, without walking a long lazy seed list."""
    if isinstance(seeds, Seeds):
        return sum(seeds.count(s) for s in done)
    return sum(s in done for s in seeds)


def _resume(outdir: Path, fmt: str, row: dict, stem: str, subdirs: bool = False) -> set[int]:
    """The seeds whose files ``outdir`` holds (one scan of the folder and, with ``subdirs``, of
    its sub-folders). Lists those an interrupted render wrote but did not list in the
    manifest, and removes its stray temp files (those older than ``STALE_TMP_S``: a younger
    one may be another render's write in progress)."""
    pattern = re.compile(rf"{stem}\d+\.{re.escape(fmt)}")
    present: set[str] = set()
    folders = [""]
    while folders:
        prefix = folders.pop()
        with os.scandir(outdir / prefix) as entries:
            for entry in entries:
                if pattern.fullmatch(entry.name):
                    present.add(prefix + entry.name)
                elif subdirs and not prefix and SUBDIR.fullmatch(entry.name) and entry.is_dir():
                    folders.append(entry.name + "/")
                elif (entry.name.startswith(f".{stem}") and entry.name.endswith(".tmp")
                      and time.time() - entry.stat().st_mtime > STALE_TMP_S):
                    Path(entry.path).unlink(missing_ok=True)  # not another render's live write
    path = outdir / MANIFEST
    listed = {row["file"] for row in manifest_rows(path, repair=True)
              if type(row.get(stem)) is int}  # a row of another seed type is damage
    missing = sorted(present - listed)
    if missing:
        with path.open("a") as f:
            f.writelines(json.dumps({stem: _seed_of(n, stem), "file": n, **row}) + "\n"
                         for n in missing)
    return {seed for n in present if seed_path(seed := _seed_of(n, stem), fmt, stem, subdirs) == n}


def manifest_rows(path: Path, repair: bool = False) -> Iterator[dict]:
    """The rows of a manifest that name an image: JSON objects whose ``file`` (and ``member``,
    where there is one) is a string; other lines are damage, skipped (none where there is no
    manifest). ``repair``: first drop a last row that a kill cut short (the caller lists its
    image again), so that rows appended after it start on a line of their own."""
    if not path.is_file():
        return
    with path.open("rb+" if repair else "rb") as f:
        end = 0
        for line in f:
            if repair and not line.endswith(b"\n"):
                f.truncate(end)
                return
            end += len(line)
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past the stack
                continue
            if isinstance(row, dict) and isinstance(row.get("file"), str) and isinstance(
                    row.get("member", ""), str):
                yield row


def _seed_of(path: str, stem: str) -> int:
    return int(path.rpartition("/")[2][len(stem):].split(".")[0])


def check_manifest(outdir: Path, row: dict) -> None:
    """Resuming into a folder rendered by another model, in another format or layout, at
    another truncation or prior (or another walk or class) would mix two sets: a one-line
    error naming what differs. A folder of an older gantool, whose rows name no model or
    format, is compared on what they name (its files' suffix gives the format)."""
    before = first_row(outdir / MANIFEST)
    if before is None:
        return
    before.setdefault("format", str(before.get("member") or before.get("file", "")
                                    ).rpartition(".")[2])
    before.setdefault("layout", "flat")
    now = {k: v for k, v in row.items() if k != "backend" and (k in before or k not in LEGACY)}
    now.setdefault("layout", "flat")
    now = json.loads(json.dumps(now))  # as the manifest holds it (tuples become lists)
    differ = [k for k in now if now[k] != before.get(k)]
    if differ:
        raise GantoolError(f"{outdir} holds images rendered with {say_settings(before, differ)}, "
                           f"not {say_settings(now, differ)}; render into another folder, or "
                           "with what it holds")


def say_settings(row: dict, keys) -> str:
    """``keys`` of a manifest row, for a message (a model by its weights' SHA-256)."""
    return ", ".join(f"model {str(row.get(k))[:16]}..." if k == "weights_sha256" and row.get(k)
                     else f"{k} {'none' if row.get(k) is None else row.get(k)}" for k in keys)


def first_row(path: Path) -> dict | None:
    """The first manifest row that is a JSON object (None: no manifest, or none)."""
    return next(manifest_rows(path), None)
