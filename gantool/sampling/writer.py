"""The output stage of a render: encode and write images on every core, several batches deep.

``ImageWriter.commit(seeds, images)`` copies a batch into one of ``depth`` preallocated slots
(or takes it in place: ``reserve`` hands a generator the slot to draw into) and hands its
images, in one chunk per worker, to a pool of ``workers`` threads or processes that encode
them (``Encoding``) and write each file atomically. Only taking a slot waits, while every slot
is still being written, so the generator runs ahead by up to ``depth - 1`` batches and memory stays
at ``depth`` x batch x image bytes, whatever the number of seeds.

Threads or processes is decided by measurement (``Encoding.holds_gil``): zlib (Pillow's PNG),
WebP and npy writes release Python's GIL and scale with threads; fpng and Pillow's JPEG hold it,
so they run in processes that read the slots from shared memory (no pickling of images).
Workers are forked where the platform can (Linux), as torch's DataLoader does: they start in
milliseconds, and a script, a notebook or ``python -`` calling this needs no
``if __name__ == "__main__":`` guard. They only encode and write files, so what a fork cannot
carry (CUDA, gRPC channels, torch's threads) is never touched in them. Elsewhere they are
spawned, and the guard is needed as usual. A slot's files are listed in ``manifest.jsonl`` once
all of them are on disk, after one fsync of the folder.
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing
import os
import signal
import sys
import uuid
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from gantool.errors import GantoolError, OptionError
from gantool.fileio import fsync_dir
from gantool.sampling.images import Encoding, save_image, seed_path
from gantool.system import die_with_parent, signals_held, usable_cpus

MANIFEST = "manifest.jsonl"
PARALLEL = ("auto", "thread", "process")
# open files a worker costs at most: its share of the slots (each with its encodings' region
# under a sink), its process's pipe, the file it writes; and those the process keeps besides
FILES_PER_WORKER, FILES_KEPT = 8, 64

# Slots of this process by name: created here (the main process) or attached (a worker).
_SLOTS: dict[str, tuple[np.ndarray, shared_memory.SharedMemory | None]] = {}


def capped_workers(asked: int | None) -> tuple[int, str]:
    """The encoders a writer runs for ``asked`` (None: one per usable core): at most one per
    usable core (more only take turns on them) and few enough for their open files to fit this
    process's limit (``ulimit -n``); with a line saying so when that is fewer than asked."""
    cores, limit = usable_cpus(), _open_files_limit()
    fit = max(1, (limit - FILES_KEPT) // FILES_PER_WORKER) if limit else cores
    workers = max(1, min(asked or cores, cores, fit))
    if asked is None or workers >= asked:
        return workers, ""
    why = (f"one per usable core ({cores})" if workers == cores else
           f"as many as the open-file limit ({limit}, ulimit -n) allows")
    return workers, f"note: {workers} encoding worker(s), not {asked}: {why}"


def _open_files_limit() -> int | None:
    """This process's soft limit on open files; None where there is none (or no such limit)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def default_depth(batch: int, workers: int) -> int:
    """Slots: one being filled by the generator, and at least two batches or twice the workers'
    count of images waiting, so no worker idles while the next batch is drawn."""
    return 1 + max(2, math.ceil(2 * workers / max(batch, 1)))


@dataclass
class _Slot:
    name: str
    seeds: list[int] = field(default_factory=list)
    futures: list[Future] = field(default_factory=list)
    listed: bool = False  # its files are in the manifest


class ImageWriter:
    """Write ``outdir/seedNNNNNN.<fmt>`` for every image committed, with ``manifest.jsonl`` rows
    ``{"seed", "file", **row}`` for the files that are whole on disk (``stem`` "frame":
    ``frameNNNNNN.<fmt>`` and ``{"frame", ...}``; ``subdirs``: each in the sub-folder of its
    thousand, ``seed_path``). With a ``sink`` (``gantool.sampling.tars.TarSink``) the workers
    encode into memory and every slot's images go to ``sink.add(seeds, names, data)`` in
    order instead, which writes and lists them; ``sink.abort()`` on a stop."""

    def __init__(self, outdir: Path, encoding: Encoding, batch: int, shape: tuple[int, int, int],
                 workers: int | None = None, depth: int | None = None, parallel: str = "auto",
                 row: dict | None = None, stem: str = "seed", subdirs: bool = False,
                 sink=None):
        if parallel not in PARALLEL:
            raise GantoolError(f"unknown parallel mode {parallel!r}; choose "
                               f"{', '.join(PARALLEL)}")
        self.outdir, self.encoding, self.row = Path(outdir), encoding, row or {}
        self.stem, self.subdirs, self.sink = stem, subdirs, sink
        self.workers = capped_workers(workers)[0]  # not past the cores nor the open files
        self.depth = depth or default_depth(batch, self.workers)
        self.slot_shape = (batch, *shape)
        if parallel == "auto":
            parallel = "process" if encoding.holds_gil(shape[-1]) else "thread"
        self.parallel = parallel
        self.written = 0
        self._free: deque[str] = deque()
        self._busy: deque[_Slot] = deque()
        self._reserved: str | None = None
        self._names: list[str] = []
        # with a sink: room for each image's encoding (fpng and zlib stay within the raw size
        # plus a little; an encoding larger than its room comes back through the pool instead)
        self.room = int(math.prod(shape) * 1.1) + 65536
        self.out_shape = (batch * self.room,)
        self._out: dict[str, str] = {}
        try:
            for _ in range(self.depth):
                self._free.append(self._allocate())
        except BaseException:
            self._release()
            raise
        self.pool: Executor = (
            ProcessPoolExecutor(self.workers, mp_context=_process_context(),
                                initializer=_worker_init)
            if parallel == "process" else ThreadPoolExecutor(self.workers))

    def reserve(self, n: int) -> np.ndarray:
        """A free slot's first ``n`` images (uint8 (n, H, W, C)) for a generator to draw into
        (``generate_into``), saving a copy; waits while every slot is being written."""
        if self._reserved is None:
            if not self._free:
                self._finish_oldest()
            self._reserved = self._free.popleft()
        return _SLOTS[self._reserved][0][:n]

    def commit(self, seeds, images: np.ndarray) -> None:
        """Queue the reserved slot's images for ``seeds``: ``images`` is the array ``reserve``
        gave (drawn in place) or any (B, H, W, C) uint8 array, copied into the slot."""
        seeds = [int(s) for s in seeds]
        array = self.reserve(len(seeds))
        if len(seeds) and images.__array_interface__["data"][0] != array.ctypes.data:
            array[:] = images
        slot, self._reserved = _Slot(self._reserved, seeds), None
        if not seeds:
            self._free.append(slot.name)
            return
        per = math.ceil(len(seeds) / min(self.workers, len(seeds)))
        with signals_held():  # busy with all its chunks handed out, or not at all
            self._busy.append(slot)
            for lo in range(0, len(seeds), per):
                names = [self._name(s) for s in seeds[lo : lo + per]]
                slot.futures.append(
                    self.pool.submit(_encode_chunk, slot.name, self.slot_shape, lo, len(names),
                                     self.encoding, self._out.get(slot.name), self.out_shape,
                                     self.room) if self.sink is not None else
                    self.pool.submit(_write_chunk, slot.name, self.slot_shape, lo, names,
                                     str(self.outdir), self.encoding))

    def close(self) -> None:
        """Wait for every queued file, list it, and free the workers and slots."""
        try:
            while self._busy:
                self._finish_oldest()
        finally:
            self.abort()

    def abort(self) -> None:
        """Stop: queued chunks are dropped, running ones finish; every file on disk is listed
        (files are renamed into place whole, so one that exists is whole, whatever became of
        the worker that wrote it)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.sink is not None:  # encoded slots go in, in order; an unfinished tar goes
            try:
                for slot in self._busy:
                    if any(f.cancelled() or f.exception() for f in slot.futures):
                        break
                    self._to_sink(slot)
            finally:
                self.sink.abort()
                self._busy.clear()
                self._release()
            return
        try:
            for slot in self._busy:
                if not slot.listed:
                    self._record(slot, [n for s in slot.seeds
                                        if (self.outdir / (n := self._name(s))).exists()])
        except GantoolError:
            pass  # the manifest cannot grow (a full disk): a resume lists those files
        finally:
            self._busy.clear()
            self._release()

    def _finish_oldest(self) -> None:
        """Wait for the oldest busy slot's files, list them, free the slot. It stays busy until
        listed, so a Ctrl-C during the wait leaves its files to ``abort`` to list."""
        slot = self._busy[0]
        wait(slot.futures)
        errors = [f.exception() for f in slot.futures if f.exception() is not None]
        if self.sink is not None:
            if not errors:
                self._to_sink(slot)
            slot.listed = True
        else:
            self._record(slot, [n for f in slot.futures if f.exception() is None
                                for n in f.result()])
        self._busy.popleft()
        self._free.append(slot.name)
        if errors:
            raise _user_error(errors[0], self.outdir)

    def _to_sink(self, slot: _Slot) -> None:
        """Hand a slot's encoded images, in order, to the sink (views of its out region, or
        the bytes of an encoding that did not fit there)."""
        out = memoryview(_SLOTS[self._out[slot.name]][0])
        data = []
        for f in slot.futures:
            for item in f.result():
                i = len(data)
                data.append(out[i * self.room : i * self.room + item]
                            if isinstance(item, int) else item)
        self.written += self.sink.add(slot.seeds, list(map(self._name, slot.seeds)), data)

    def _name(self, seed: int) -> str:
        return seed_path(seed, self.encoding.fmt, self.stem, self.subdirs)

    def _record(self, slot: _Slot, names: list[str]) -> None:
        """List a slot's files that are on disk: all its rows or none, once."""
        if not names:
            slot.listed = True
            return
        for folder in {Path(n).parent for n in names} | {Path(".")}:  # and new sub-folders
            fsync_dir(self.outdir / folder)
        by_name = {self._name(s): s for s in slot.seeds}
        rows = memoryview("".join(json.dumps({self.stem: by_name[n], "file": n, **self.row})
                                  + "\n" for n in names).encode())
        with signals_held(), (self.outdir / MANIFEST).open("ab", buffering=0) as f:
            before = f.seek(0, os.SEEK_END)
            try:
                while rows:
                    rows = rows[f.write(rows):]
            except OSError as e:  # a full disk: no half line (a rerun lists these files)
                f.truncate(before)
                raise _user_error(e, self.outdir) from None
            self.written += len(names)
            slot.listed = True

    def _allocate(self, shape: tuple[int, ...] | None = None) -> str:
        """A slot in shared memory (process workers read it; a Triton server on this host can
        write into it); in plain memory for thread workers when /dev/shm has no room. With a
        sink, each slot has a companion region ``NAME-out`` the workers encode into."""
        shape = shape or self.slot_shape
        name = f"gantool-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        nbytes = math.prod(shape)
        try:
            _check_shared_memory(nbytes * self.depth * (2 if self.sink is not None else 1))
        except GantoolError:
            if self.parallel == "process":
                raise
            try:
                _SLOTS[name] = (np.empty(shape, np.uint8), None)
            except MemoryError:
                raise OptionError(None, f"the render needs {nbytes / 2**20:,.0f} MiB per image "
                                  "slot and this machine cannot give it: lower {batch_size}") \
                    from None
        else:
            shm = shared_memory.SharedMemory(name=name, create=True, size=max(nbytes, 1))
            _SLOTS[name] = (np.ndarray(shape, np.uint8, shm.buf), shm)
        self._names.append(name)
        if self.sink is not None and shape == self.slot_shape:
            self._out[name] = self._allocate(self.out_shape)
        return name

    def _release(self) -> None:
        for name in self._names:
            _, shm = _SLOTS.pop(name, (None, None))
            if shm is not None:
                shm.close()
                shm.unlink()
        self._names.clear()


def shared_region(array: np.ndarray) -> tuple[str, int, int] | None:
    """(shared-memory name, byte offset, slot bytes) when ``array`` lies inside a writer slot in
    shared memory, so another process (Triton) can write it in place; else None."""
    addr = array.__array_interface__["data"][0]
    for name, (slot, shm) in list(_SLOTS.items()):
        start = slot.ctypes.data
        if shm is not None and start <= addr and addr + array.nbytes <= start + slot.nbytes:
            return name, addr - start, slot.nbytes
    return None


def _check_shared_memory(nbytes: int) -> None:
    """A slot larger than /dev/shm's free space would crash its writer (SIGBUS), so say so."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if nbytes > free:
        raise OptionError(None, f"the render needs {nbytes / 2**20:,.0f} MiB of shared memory for "
                          f"its image slots and /dev/shm has {free / 2**20:,.0f} MiB free: lower "
                          "{batch_size}, or pass {workers} 1 to write from threads")


def _process_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if sys.platform == "linux" and "fork" in methods
                                       else "spawn")


def _worker_init() -> None:
    # Ctrl-C (and a SIGTERM sent to the whole job) stops the parent, which drains us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)  # a parent killed with -9 cannot drain us: go with it
    _keep_heap()


def _keep_heap() -> None:
    """Serve the encoders' megabyte buffers from a heap that is kept, not from fresh mmaps:
    glibc otherwise maps and unmaps them per image, and the page faults cost about a third
    of an fpng encode at 1024 px (measured in render workers). No-op beyond glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 2**20)
    libc.mallopt(m_trim_threshold, 512 * 2**20)


def _slot(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in _SLOTS:  # a worker process: attach to the parent's shared memory
        shm = shared_memory.SharedMemory(name=name)
        _SLOTS[name] = (np.ndarray(shape, np.uint8, shm.buf), shm)
    return _SLOTS[name][0]


def _write_chunk(slot: str, shape: tuple[int, ...], lo: int, names: list[str], outdir: str,
                 encoding: Encoding) -> list[str]:
    """Encode images lo.. of a slot and write them atomically (no per-file fsync: the parent
    fsyncs the folder once per batch); -> the names written."""
    images = _slot(slot, shape)
    for i, name in enumerate(names):
        save_image(images[lo + i], Path(outdir) / name, durable=False, encoding=encoding)
    return names


def _encode_chunk(slot: str, shape: tuple[int, ...], lo: int, n: int, encoding: Encoding,
                  out: str, out_shape: tuple[int], room: int) -> list[int | bytes]:
    """Encode images lo..lo+n of a slot into its out region, image i at ``i * room``; -> each
    encoding's size, or its bytes when it is larger than ``room``."""
    images, region = _slot(slot, shape), _slot(out, out_shape)
    sizes: list[int | bytes] = []
    for i in range(lo, lo + n):
        data = encoding.encode(images[i])
        if len(data) > room:
            sizes.append(data)
            continue
        region[i * room : i * room + len(data)] = np.frombuffer(data, np.uint8)
        sizes.append(len(data))
    return sizes


def _user_error(error: BaseException, outdir: Path) -> BaseException:
    if isinstance(error, OSError):
        where = error.filename or outdir
        return GantoolError(f"cannot write {where}: {error.strerror or error}")
    return error
