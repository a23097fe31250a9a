"""What a drawing command asks of a generator, whatever the backend (torch, ONNX Runtime,
TensorRT, a Triton server): seeds to a folder in one of the layouts, each asked class to a
folder of its own, a grid with a row per class or per truncation, and the truncation a model is
drawn at. ``generate`` and ``render`` call these; the pipeline under them is
``sampling/pipeline.py`` (files) and ``sampling/tars.py`` (WebDataset tars)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gantool.backends.base import FixedClass
from gantool.errors import OptionError
from gantool.latent import asked_truncation, batched, validate_truncation
from gantool.sampling.images import save_grid
from gantool.sampling.pipeline import check_grid_size, render_seeds


def render_images(generator, seeds: Sequence[int], truncation: float | None, batch_size: int,
                  outdir: Path | None = None, grid: Path | None = None, layout: str = "flat",
                  per_tar: int = 10_000, model: str = "", **options) -> dict:
    """``render_seeds`` in any of the ``LAYOUTS``: ``webdataset`` writes tar shards of
    ``per_tar`` images (``gantool.sampling.tars``; ``model`` names the model in each sample's
    metadata)."""
    if layout != "webdataset":
        return render_seeds(generator, seeds, truncation, batch_size, outdir, grid,
                            layout=layout, **options)
    if grid is not None or outdir is None:
        raise OptionError("layout", "webdataset writes tars into the output folder, and takes "
                          "no grid: draw one in a command of its own", see="grid")
    from gantool.sampling.tars import render_tars

    return render_tars(generator, seeds, truncation, batch_size, outdir, per_tar=per_tar,
                       model=model, **options)


def render_classes(generator, picked: Sequence[int], seeds: Sequence[int],
                   truncation: float | None, batch_size: int, outdir: Path,
                   **options) -> list[tuple[str, Path, dict]]:
    """``render_images`` once per class index in ``picked``, each into ``outdir/classNNN``
    with its class named in the manifest: (class name, folder, counts) per class."""
    done = []
    for i in picked:
        folder = Path(outdir) / f"class{i:03d}"
        name = generator.classes[i]
        stats = render_images(FixedClass(generator, i), seeds, truncation, batch_size, folder,
                              None, identity={"class": name}, **options)
        done.append((name, folder, stats))
    return done


def resolve_truncation(generator, asked: float | None) -> float | None:
    """``asked`` (inf: none, the plain prior), or the model's default; an OptionError if the
    model's prior refuses it."""
    t = asked_truncation(asked, generator.default_truncation)
    try:
        validate_truncation(t, generator.prior)
    except ValueError as e:
        raise OptionError("truncation", str(e)) from None
    return t


def class_grid(generator, picked: Sequence[int], seeds: Sequence[int],
               truncation: float | None, grid: Path, batch_size: int) -> None:
    """One grid row per class index in ``picked``, the same seeds in every row."""
    check_grid_size(len(seeds) * len(picked),
                    (generator.resolution, generator.resolution, generator.channels))
    rows = [np.concatenate([generator.generate(chunk, truncation, [i] * len(chunk))
                            for chunk in batched(seeds, batch_size)]) for i in picked]
    save_grid(np.concatenate(rows), grid, ncols=len(seeds))


def sweep_grid(generator, seeds: Sequence[int], values: Sequence[float | None], grid: Path,
               batch_size: int) -> None:
    """The same seeds at several truncations, one grid row per value (the megapixel paper's
    comparison of z intervals)."""
    check_grid_size(len(seeds) * len(values),
                    (generator.resolution, generator.resolution, generator.channels))
    rows = [np.concatenate([generator.generate(chunk, t) for chunk in batched(seeds, batch_size)])
            for t in values]
    save_grid(np.concatenate(rows), grid, ncols=len(seeds))
