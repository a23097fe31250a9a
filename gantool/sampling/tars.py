"""A render as WebDataset tar shards: ``OUT/000000.tar``, ``OUT/000001.tar``, ... of
``per_tar`` images each, in seed-list order, the format training pipelines read (webdataset,
img2dataset's output) and plain ``tar`` lists.

Each sample is two members with the seed's key: ``seed000042.png`` (or .jpg/.webp/.npy) and
``seed000042.json`` (seed, truncation, prior, class where there is one, backend, model).
Tar k holds the seeds at positions ``k * per_tar ...`` of the list: its images are rendered by
``render_seeds`` into a hidden staging folder ``OUT/.00000k.tar.d`` (whole files, resumable,
on every core), then packed into the tar, which appears under its name only when complete
(``atomic_write``; the same images make the same bytes), and listed in
``OUT/manifest.jsonl`` (one row per seed: ``file`` the tar, ``member`` the image). Packing
copies in the kernel (``copy_file_range``) on a thread while the next tar renders. A rerun
skips finished tars and resumes a partial one from its staging folder; a folder holds one
seed list (``tars.json``) and one set of settings.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from gantool.errors import GantoolError
from gantool.fileio import atomic_write, folder_lock
from gantool.sampling.latent import Seeds
from gantool.sampling.render import check_manifest, manifest_row, render_seeds
from gantool.sampling.writer import MANIFEST
from gantool.system import signals_held

PER_TAR = 10_000  # img2dataset's and WebDataset's usual shard size
RECORD = "tars.json"


def tar_name(index: int) -> str:
    return f"{index:06d}.tar"


def render_tars(generator, seeds: Sequence[int], truncation: float | None, batch_size: int,
                out: Path, encoding=None, per_tar: int = PER_TAR, model: str = "",
                identity: dict | None = None, backend: str = "", **render) -> dict:
    """Render ``seeds`` into tar shards under ``out`` (see the module); ``render``: the
    options of ``render_seeds`` (workers, console, progress, ...). Returns render_seeds'
    counts summed over the tars, with ``tars`` written."""
    if per_tar < 1:
        raise GantoolError(f"--tar-images must be at least 1, got {per_tar}")
    out.mkdir(parents=True, exist_ok=True)
    row = manifest_row(truncation, generator.prior, identity, "webdataset", backend)
    totals = {"written": 0, "skipped": 0, "failed": 0, "seconds": 0.0, "tars": 0}
    t0 = time.perf_counter()
    stop = threading.Event()
    with ExitStack() as held:
        held.enter_context(folder_lock(out, (
            f"another gantool process (pid {{pid}}) is writing tars into {out}; wait for it to "
            "finish or stop it, or write into another folder")))
        check_manifest(out, row)
        _claim(out, seeds, per_tar)
        packer = held.enter_context(ThreadPoolExecutor(1))
        held.callback(stop.set)  # an interrupted render: the packing in flight gives up
        packing: Future | None = None
        for k, lo in enumerate(range(0, len(seeds), per_tar)):
            block = seeds[lo : lo + per_tar]
            tar = out / tar_name(k)
            if tar.exists():
                totals["skipped"] += len(block)
                continue
            staging = out / f".{tar.name}.d"
            stats = render_seeds(generator, block, truncation, batch_size, staging,
                                 encoding=encoding, backend=backend, identity=identity,
                                 label=tar.name, **render)
            for key in ("written", "skipped", "failed"):
                totals[key] += stats[key]
            if stats["failed"]:
                continue  # the next run renders the missing seeds and packs this tar
            if packing is not None:
                packing.result()
            packing = packer.submit(_pack, staging, block, tar, row, model, stop)
            totals["tars"] += 1
        if packing is not None:
            packing.result()
    totals["seconds"] = time.perf_counter() - t0
    totals["images_per_s"] = totals["written"] / totals["seconds"] if totals["seconds"] else 0.0
    return totals


def _claim(out: Path, seeds: Sequence[int], per_tar: int) -> None:
    """Record the seed list and tar size the folder's tars are cut from; another list or size
    would put other seeds under the same tar names."""
    record = {"seeds": str(seeds) if isinstance(seeds, Seeds) else None, "per_tar": per_tar}
    path = out / RECORD
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except ValueError:
            before = None
        if before != record:
            raise GantoolError(f"{out} holds tars of {before}; render seeds {record['seeds']} "
                               f"in tars of {per_tar} into another --out")
        return
    with atomic_write(path) as f:
        f.write(json.dumps(record).encode())


def _pack(staging: Path, block: list[int], tar: Path, row: dict, model: str,
          stop: threading.Event) -> None:
    """The staging folder's images, in ``block`` order, as tar members beside their metadata;
    the tar is linked in whole, listed in the manifest, and the staging folder removed."""
    files = {}
    for line in (staging / MANIFEST).read_text().splitlines():
        entry = json.loads(line)
        files[entry["seed"]] = entry["file"]
    meta = {k: v for k, v in row.items() if k != "layout"}
    listed = []
    with atomic_write(tar, durable=False) as f:
        fd = f.fileno()
        for seed in dict.fromkeys(block):  # a seed the list names twice is one sample
            if stop.is_set():
                raise KeyboardInterrupt  # nothing is linked in; the rerun packs again
            name = files[seed]
            key = name.rsplit(".", 1)[0]
            _member(fd, staging / name, name)
            _member(fd, json.dumps({"seed": seed, **meta, "model": model}).encode(),
                    f"{key}.json")
            listed.append({"seed": seed, "file": tar.name, "member": name, **row})
        os.write(fd, b"\0" * 2 * tarfile.BLOCKSIZE)  # the end-of-archive marker
    with signals_held(), (tar.parent / MANIFEST).open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in listed)
    shutil.rmtree(staging)


def _member(fd: int, data: Path | bytes, name: str) -> None:
    """One tar member at ``fd``'s position: its header, then a file's bytes (copied by the
    kernel where it can) or ``data``, then the padding to the next block. Headers carry no
    time, owner or group (mtime 0), so the same images make the same tar, byte for byte."""
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o644
    _write_all(fd, info.tobuf(tarfile.USTAR_FORMAT))
    if isinstance(data, Path):
        with data.open("rb") as src:
            _copy(src.fileno(), fd, size)
    else:
        _write_all(fd, data)
    _write_all(fd, b"\0" * (-size % tarfile.BLOCKSIZE))


def _copy(src: int, dst: int, size: int) -> None:
    left = size
    while left:
        try:
            n = os.copy_file_range(src, dst, left)
        except OSError:  # another filesystem, an old kernel: through user space
            n = 0
        if n == 0:
            _write_all(dst, os.read(src, left))
            return
        left -= n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
