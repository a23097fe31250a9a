"""Engines that draw one render as several processes, each a whole `gantool generate` on its
shard of the seed list (``sampling/shards.py``): ``processes`` (one per device of this host,
``generate --devices``) and ``ray_actors`` (a Ray actor pool, ``generate --engine ray``). The
CLI hands an engine the command line of a shard (``ShardCommand``: its ``(index, count,
device, workers)`` -> the arguments of ``python -m gantool``), so a shard draws exactly what a
single process would, and the engines know no flag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class ShardCommand(Protocol):
    def __call__(self, index: int, count: int, device: str | None,
                 workers: int | None) -> list[str]:
        """The arguments of ``python -m gantool`` that draw shard ``index`` of ``count`` on
        ``device`` (None: the command's own) with ``workers`` encoders (None: its own)."""
        ...


def images_per_seed(checkpoint, backend: str, classes: Sequence[str]) -> int:
    """Images a seed gives: one per asked class (the model opened here to check them)."""
    if not classes:
        return 1
    from gantool.backends import class_indices, open_backend

    gen = open_backend(checkpoint, backend, "auto" if backend == "trt" else "cpu")
    return len(class_indices(getattr(gen, "classes", ()), classes))
