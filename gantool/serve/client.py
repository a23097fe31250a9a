"""Render images through a running Triton server to files: ``render_from_server``, the library
function of ``gantool render``. The server is drawn through the Triton backend
(``gantool.backends.triton_backend.TritonGenerator``), as any other backend, and written by the
render pipeline (``gantool.sampling.draw``): names, manifest and resuming as ``gantool
generate``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from gantool.backends.triton_backend import RETRY_FOR, TritonGenerator


def render_from_server(url: str, seeds: Sequence[int], truncation: float | None, outdir,
                       encoding=None, protocol: str = "grpc", request_batch: int = 8,
                       concurrency: int = 4, workers: int | None = None, timeout: float = 60.0,
                       retry_for: float = RETRY_FOR, retries: int | None = None,
                       model: str = "render", progress: bool = True, console=None,
                       shared_memory: str = "auto", classes: Sequence[str] = (),
                       layout: str = "flat", per_tar: int = 10_000) -> dict:
    """Render ``seeds`` through the Triton server at ``url`` into ``outdir``, named and listed
    (manifest.jsonl) as ``gantool generate`` does; resumable. ``truncation`` None: the model's
    default; ``encoding``: a ``gantool.sampling.images.Encoding`` (default: PNG); ``classes``:
    a conditional model's classes (names or indices, ``class_indices``), several into one
    ``classNNN`` sub-folder each; ``layout``/``per_tar``: render_images'. Returns the counts
    (``failed``: seeds the server did not draw), summed over the classes."""
    from gantool.backends import FixedClass, class_indices
    from gantool.sampling.draw import render_classes, render_images, resolve_truncation

    generator = TritonGenerator(url, protocol, model, request_batch, concurrency, timeout,
                                retry_for, retries, shared_memory=shared_memory)
    try:
        t = resolve_truncation(generator, truncation)
        picked = class_indices(generator.classes, classes) if classes else []
        options = {"layout": layout, "per_tar": per_tar, "model": url, "encoding": encoding,
                   "workers": workers, "backend": f"triton-{protocol}", "console": console,
                   "progress": progress}
        if len(picked) > 1:
            done = [stats for _, _, stats in render_classes(
                generator, picked, seeds, t, generator.batch_size, outdir, **options)]
        else:
            one = FixedClass(generator, picked[0]) if picked else generator
            identity = {"class": generator.classes[picked[0]]} if picked else None
            done = [render_images(one, seeds, t, generator.batch_size, outdir, None,
                                  identity=identity, **options)]
        total = {k: sum(stats[k] for stats in done) for k in done[0]}
        total["images_per_s"] = total["written"] / total["seconds"] if total["seconds"] else 0.0
        return {**total, "transport": generator.transport}
    finally:
        generator.close()
