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
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path

from gantool.errors import GantoolError, OptionError, first_line
from gantool.fileio import atomic_write, claim_folder
from gantool.latent import Seeds
from gantool.sampling.images import Encoding
from gantool.sampling.pipeline import manifest_row, manifest_rows, render_seeds, say_settings
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
    encoding = encoding or Encoding()
    row = manifest_row(truncation, generator.prior, identity, "webdataset", backend,
                       getattr(generator, "weights_sha256", ""), encoding.fmt)
    sink = TarSink(out, todo, row, model)
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

    def block(self, k: int) -> Sequence[int]:
        """The seeds of tar ``k``."""
        return self.seeds[k * self.per : (k + 1) * self.per]

    def blocks(self) -> Iterator[tuple[int, int]]:
        return ((k, self._size(k)) for k in range(self.count) if k not in self.done)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return chain.from_iterable(self.block(k) for k, _ in self.blocks())

    def __getitem__(self, index):
        raise TypeError("the seeds of a tar render are read in order only")


class TarSink:
    """Where an ``ImageWriter`` puts encoded images for tars: ``todo.blocks()`` yields (tar
    index, images) of the tars to write, in the order their seeds arrive."""

    def __init__(self, out: Path, todo: _Todo, row: dict, model: str):
        self.out, self.todo, self.row, self.model = out, todo, row, model
        self.blocks = todo.blocks()
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

    def recover(self) -> None:
        """List the samples of whole tars that a stop between linking a tar and listing it
        left out of the manifest, rebuilt from the tar's own sample records (called under the
        folder's lock); a tar of other settings is refused as a folder of other images is."""
        path = self.out / MANIFEST
        listed = Counter(r["file"] for r in manifest_rows(path, repair=True)
                         if type(r.get("seed")) is int)
        short = {tar_name(k) for k in self.todo.done
                 if listed[tar_name(k)] < len(set(self.todo.block(k)))}
        if not short:
            return
        have = {(r["file"], r.get("member")) for r in manifest_rows(path)
                if r["file"] in short and type(r.get("seed")) is int}
        rows = [r for tar in sorted(short) for r in self._rows_of(tar)
                if (r["file"], r["member"]) not in have]
        with signals_held(), path.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def _rows_of(self, tar: str) -> list[dict]:
        """The manifest rows of a whole tar, from its samples' .json members."""
        rows = []
        for name, meta in sample_records(self.out / tar):
            row = {"seed": meta.get("seed"), "file": tar, "member": name,
                   **{k: meta.get(k, v) for k, v in self.row.items()}}
            differ = [k for k, v in self.row.items()
                      if k != "backend" and json.loads(json.dumps(v)) != row[k]]
            if differ:
                raise GantoolError(f"{self.out / tar} holds images rendered with "
                                   f"{say_settings(row, differ)}; render into another folder, "
                                   "or with what it holds")
            rows.append(row)
        return rows

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
        raise GantoolError(f"{out} holds tars of seeds {before.get('seeds')} in tars of "
                           f"{before.get('per_tar')}; render seeds {record['seeds']} in tars of "
                           f"{per_tar} into another folder")


def sample_records(path: Path) -> list[tuple[str, dict]]:
    """(image member, its .json record) of every sample of a tar gantool wrote, in order; a
    one-line error for a tar that is cut short or damaged."""
    images, out = {}, []
    for member, data in _members(path):
        key, _, suffix = member.name.rpartition(".")
        if suffix != "json":
            images[key] = member.name
            continue
        try:
            meta = json.loads(data)
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict) or type(meta.get("seed")) is not int or key not in images:
            raise GantoolError(f"{path}: sample {key} is damaged; delete the tar and render "
                               "again to redraw it")
        out.append((images[key], meta))
    return out


def tar_members(path: Path) -> set[str]:
    """The names of a tar's members, from its headers (no image is read); a one-line error
    for a tar that is cut short or damaged."""
    return {member.name for member, _ in _members(path, data=False)}


def _members(path: Path, data: bool = True) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """A tar's members (and the bytes of its .json ones, with ``data``), each checked to lie
    whole within the file."""
    size = path.stat().st_size
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile() or member.offset_data + member.size > size:
                    raise tarfile.ReadError(f"member {member.name} is cut short")
                read = data and member.name.endswith(".json")
                yield member, tar.extractfile(member).read() if read else None
    except (tarfile.TarError, OSError) as e:
        raise GantoolError(f"{path} is not a whole tar ({first_line(e)}); delete it and "
                           "render again to redraw it") from None


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
