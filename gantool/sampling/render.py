"""Draw images for a list of seeds through any backend, in batches, to files and/or a grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gantool.sampling.images import save_grid, save_image, seed_filename
from gantool.sampling.latent import batched


def render_seeds(generator, seeds: Sequence[int], truncation: float | None, batch_size: int,
                 outdir: Path | None = None, grid: Path | None = None,
                 console: Console | None = None, progress: bool = True) -> np.ndarray | None:
    """Write ``outdir/seedNNNNNN.png`` per seed and/or a ``grid`` image; returns the grid images.

    ``generator`` is any object with the Generator protocol of ``gantool.backends``.
    """
    keep = [] if grid is not None else None
    bar = Progress(TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=console or Console(stderr=True),
                   disable=not progress)
    with bar:
        task = bar.add_task("generate", total=len(seeds))
        for chunk in batched(list(seeds), batch_size):
            images = generator.generate(chunk, truncation)  # (B, H, W, C) uint8
            if outdir is not None:
                for seed, image in zip(chunk, images):
                    save_image(image, outdir / seed_filename(seed))
            if keep is not None:
                keep.append(images)
            bar.advance(task, len(chunk))
    if keep is None:
        return None
    images = np.concatenate(keep)
    save_grid(images, grid)
    return images
