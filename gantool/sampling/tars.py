"""A render as WebDataset tar shards: ``OUT/000000.tar``, ``OUT/000001.tar``, ... of
``per_tar`` images each, in seed-list order, the format training pipelines read (webdataset,
img2dataset's output) and plain ``tar`` lists.

Each sample is two members with the seed's key: ``seed000042.png`` (or .jpg/.webp/.npy) and
``seed000042.json`` (seed, truncation, prior, class where there is one, backend, model).
Tar k holds the seeds at positions ``k * per_tar ...`` of the list. The render pipeline
(``render_seeds``: the backend drawing while every core encodes) runs once over the seeds of
the tars still to write, its workers encoding into memory; ``TarSink`` appends their bytes to
the open tar in order, and a tar appears under its name only when complete (``atomic_write``;
its headers carry no time or owner, so the same images make the same bytes), and is then
listed in ``OUT/manifest.jsonl`` (one row per seed: ``file`` the tar, ``member`` the image).
A stopped render leaves whole tars only; a rerun skips them and redoes the one it was writing.
A folder holds one seed list and tar size (``tars.json``) and one set of settings.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path

from gantool.errors import GantoolError, OptionError
from gantool.fileio import atomic_write, claim_folder
from gantool.sampling.latent import Seeds
from gantool.sampling.render import manifest_row, render_seeds
from gantool.sampling.writer import MANIFEST
from gantool.system import signals_held

PER_TAR = 10_000  # img2dataset's and WebDataset's usual shard size
RECORD = "tars.json"
TAR = re.compile(r"\d{6,}\.tar")


def tar_name(index: int) -> str:
    return f"{index:06d}.tar"


def render_tars(generator, seeds: Sequence[int], truncation: float | None, batch_size: int,
                out: Path, encoding=None, per_tar: int = PER_TAR, model: str = "",
                identity: dict | None = None, backend: str = "", **render) -> dict:
    """Render ``seeds`` into tar shards under ``out`` (see the module); ``render``: the
    options of ``render_seeds`` (workers, console, progress, ...). Returns render_seeds'
    counts (``skipped``: the seeds of tars already there) and ``tars`` written."""
    if per_tar < 1:
        raise OptionError("tar_images", f"must be at least 1, got {per_tar}")
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, seeds, per_tar)
    todo = _Todo(seeds, per_tar, out)
    row = manifest_row(truncation, generator.prior, identity, "webdataset", backend)
    sink = TarSink(out, todo.blocks(), row, model)
    stats = render_seeds(generator, todo, truncation, batch_size, out, encoding=encoding,
                         backend=backend, identity=identity, layout="webdataset", sink=sink,
                         **render)
    return {**stats, "skipped": len(seeds) - len(todo), "tars": sink.tars}


class _Todo(Sequence[int]):
    """The seeds of the tars not yet in ``out``, tar after tar, lazily (one directory scan
    finds the finished tars; a block is sliced from the seed list as it is reached)."""

    def __init__(self, seeds: Sequence[int], per_tar: int, out: Path):
        self.seeds, self.per = seeds, per_tar
        self.count = -(-len(seeds) // per_tar)
        self.done = {int(e.name[:-4]) for e in os.scandir(out) if TAR.fullmatch(e.name)
                     and int(e.name[:-4]) < self.count}
        self.n = len(seeds) - sum(self._size(k) for k in self.done)

    def _size(self, k: int) -> int:
        return min(self.per, len(self.seeds) - k * self.per)

    def blocks(self) -> Iterator[tuple[int, int]]:
        return ((k, self._size(k)) for k in range(self.count) if k not in self.done)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return chain.from_iterable(self.seeds[k * self.per : (k + 1) * self.per]
                                   for k, _ in self.blocks())

    def __getitem__(self, index):
        raise TypeError("the seeds of a tar render are read in order only")


class TarSink:
    """Where an ``ImageWriter`` puts encoded images for tars: ``blocks`` yields (tar index,
    images) of the tars to write, in the order their seeds arrive."""

    def __init__(self, out: Path, blocks: Iterator[tuple[int, int]], row: dict, model: str):
        self.out, self.blocks, self.row, self.model = out, blocks, row, model
        self.meta = {k: v for k, v in row.items() if k != "layout"}
        self.tars = 0
        self._open = None  # (context, fd, tar name, images left, manifest rows, keys)

    def add(self, seeds: list[int], names: list[str], data: list[bytes]) -> int:
        """Append images to the open tar(s) in order; -> how many were listed (tars closed)."""
        listed = 0
        for seed, name, image in zip(seeds, names, data):
            if self._open is None:
                self._start()
            context, fd, tar, left, rows, keys = self._open
            key = name.rsplit(".", 1)[0]
            if key not in keys:  # a seed the list names twice is one sample
                keys.add(key)
                _member(fd, image, name)
                _member(fd, json.dumps({"seed": seed, **self.meta, "model": self.model})
                        .encode(), f"{key}.json")
                rows.append({"seed": seed, "file": tar, "member": name, **self.row})
            self._open = (context, fd, tar, left - 1, rows, keys)
            if left == 1:
                listed += self._finish()
        return listed

    def abort(self) -> None:
        """Drop the tar being written (it was never linked in under its name)."""
        if self._open is not None:
            context = self._open[0]
            self._open = None
            context.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)

    def _start(self) -> None:
        k, size = next(self.blocks)
        context = atomic_write(self.out / tar_name(k), durable=False)
        self._open = (context, context.__enter__().fileno(), tar_name(k), size, [], set())

    def _finish(self) -> int:
        context, fd, tar, _, rows, _ = self._open
        _write_all(fd, b"\0" * 2 * tarfile.BLOCKSIZE)  # the end-of-archive marker
        self._open = None
        with signals_held():  # linked in and listed together
            context.__exit__(None, None, None)
            with (self.out / MANIFEST).open("a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        self.tars += 1
        return len(rows)


def _claim(out: Path, seeds: Sequence[int], per_tar: int) -> None:
    """Record the seed list and tar size the folder's tars are cut from; another list or size
    would put other seeds under the same tar names."""
    record = {"seeds": str(seeds) if isinstance(seeds, Seeds) else None, "per_tar": per_tar}
    before = claim_folder(out / RECORD, record)
    if before is not None:
        raise GantoolError(f"{out} holds tars of {before}; render seeds {record['seeds']} in "
                           f"tars of {per_tar} into another --out")


def _member(fd: int, data: bytes, name: str) -> None:
    """One tar member at ``fd``'s position: its header (no time, owner or group), the data, the
    padding to the next block."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    _write_all(fd, info.tobuf(tarfile.USTAR_FORMAT))
    _write_all(fd, data)
    _write_all(fd, b"\0" * (-len(data) % tarfile.BLOCKSIZE))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
