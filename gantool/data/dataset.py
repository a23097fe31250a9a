"""Load a whole image dataset into memory as one (N, C, R, R) uint8 array.

Folders, zips and tars are decoded with Pillow (``gantool.data.transforms.prepare``), in worker
processes when there are more than ``PARALLEL_MIN_FILES`` files; IDX files are read with
numpy and resized in-process. Unreadable image files are skipped and listed, never raised.
"""

from __future__ import annotations

import io
import math
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gantool.config import FITS
from gantool.data.sources import (
    BUILTIN_DATASETS,
    Source,
    read_idx_images,
    read_labels,
    resolve_source,
)
from gantool.data.transforms import fit_resize, prepare
from gantool.errors import DataError
from gantool.system import usable_cpus

__all__ = ["BUILTIN_DATASETS", "ImageSet", "load_dataset"]

PARALLEL_MIN_FILES = 256
MAX_FILE_BYTES = 256 * 2**20  # one image file; a larger archive member is skipped, unread
_MAX_CHUNK = 256
_Skip = tuple[int, str, str]  # (index in source.items, file, reason)


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A dataset in memory: ``images`` is (N, C, R, R) uint8, C in {1, 3}, C-contiguous; for
    labelled data, ``labels`` (N,) int64 indexes ``classes``, the class names."""

    images: np.ndarray
    source: str
    skipped: tuple[tuple[str, str], ...] = ()
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        a = self.images
        ok = a.dtype == np.uint8 and a.ndim == 4 and a.shape[1] in (1, 3)
        if not (ok and a.shape[2] == a.shape[3]):
            raise ValueError(
                f"ImageSet.images must be (N, 1|3, R, R) uint8, got {a.dtype} {a.shape}"
            )
        if not a.flags.c_contiguous:
            object.__setattr__(self, "images", np.ascontiguousarray(a))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _check_options(resolution: int, channels: int, fit: str, background, workers) -> None:
    if fit not in FITS:
        raise DataError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise DataError(f"resolution must be an integer >= 8, got {resolution!r}")
    bg = tuple(background) if isinstance(background, (tuple, list)) else ()
    if len(bg) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in bg):
        raise DataError(f"background must be three integers 0-255 (R, G, B), got {background!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise DataError(f"workers must be a positive integer, got {workers!r}")


def _allocate(n: int, channels: int, resolution: int, label: str) -> np.ndarray:
    """np.empty((n, C, R, R), uint8), with a readable error instead of an OOM kill."""
    need = n * channels * resolution * resolution
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    if total and need > 0.8 * total:
        raise DataError(
            f"{label}: {n:,} images at {resolution}x{resolution}x{channels} need "
            f"{need / 2**30:.1f} GiB, more than this machine's memory ({total / 2**30:.1f} GiB); "
            "lower the resolution or use a subset"
        )
    return np.empty((n, channels, resolution, resolution), dtype=np.uint8)


@contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(k)``; a rich progress bar on stderr when ``enabled``."""
    if not enabled:
        yield lambda k: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task(f"decoding {label}", total=total)
        yield lambda k: bar.advance(task, k)


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or "no details"
    msg = f"{type(e).__name__}: {msg}"
    return msg if len(msg) <= 200 else msg[:197] + "..."


def _decode_chunk(
    source: Source,
    start: int,
    items: tuple[str, ...],
    resolution: int,
    channels: int,
    fit: str,
    background: tuple[int, int, int],
) -> tuple[np.ndarray, list[_Skip]]:
    """Decode ``items`` (= ``source.items[start:start + len(items)]``, passed alone so workers
    receive only their chunk) -> ((n_ok, C, R, R) uint8, skipped). Runs in workers."""
    out = np.empty((len(items), channels, resolution, resolution), dtype=np.uint8)
    skipped: list[_Skip] = []
    n_ok = 0
    read = _member_reader(source)
    try:
        for i, item in enumerate(items, start):
            try:
                fp = io.BytesIO(read(item)) if read is not None else source.root / item
                with Image.open(fp) as img:
                    out[n_ok] = prepare(img, resolution, channels, fit, background)
                n_ok += 1
            except Exception as e:  # any unreadable file is skipped, whatever Pillow raises
                skipped.append((i, source.item_name(item), _short(e)))
    finally:
        if read is not None:
            read.close()
    return out[:n_ok], skipped


class _ArchiveReader:
    """Member name -> bytes for a zip or tar archive (tar members indexed once)."""

    def __init__(self, source: Source):
        if source.kind == "zip":
            self._zip, self._tar = zipfile.ZipFile(source.root), None
        else:
            self._zip, self._tar = None, tarfile.open(source.root)
            self._members = {m.name: m for m in self._tar.getmembers()}

    def __call__(self, name: str) -> bytes:
        """The member's bytes; OSError for one over ``MAX_FILE_BYTES`` (read no further, so a
        small archive that inflates to gigabytes costs no memory)."""
        if self._zip is not None:
            declared, f = self._zip.getinfo(name).file_size, self._zip.open(name)
        else:
            declared, f = self._members[name].size, self._tar.extractfile(self._members[name])
        if f is None:
            raise OSError(f"{name} is not a regular file")
        with f:  # the header's size first, then a capped read in case the header lies
            data = f.read(MAX_FILE_BYTES + 1) if declared <= MAX_FILE_BYTES else b""
        if declared > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:
            raise OSError(f"larger than {MAX_FILE_BYTES // 2**20} MiB uncompressed: not an "
                          "image file this loader reads")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        else:
            self._tar.close()


def _member_reader(source: Source) -> _ArchiveReader | None:
    return _ArchiveReader(source) if source.kind in ("zip", "tar") else None


def _load_images(
    source: Source,
    resolution: int,
    channels: int,
    fit: str,
    background: tuple[int, int, int],
    workers: int,
    progress: bool,
) -> tuple[np.ndarray, list[_Skip]]:
    """Decode every item of a folder/zip/tar source -> ((n_ok, C, R, R) uint8, skipped)."""
    n = len(source.items)
    out = _allocate(n, channels, resolution, source.label)
    args = (resolution, channels, fit, background)
    chunk_src = Source(source.kind, source.root, (), source.label)  # items travel per chunk
    skipped: list[_Skip] = []
    with _progress(progress, n, source.label) as advance:
        if n <= PARALLEL_MIN_FILES or workers == 1:
            step = 64
            n_ok = 0
            for start in range(0, n, step):
                stop = min(n, start + step)
                imgs, skips = _decode_chunk(chunk_src, start, source.items[start:stop], *args)
                out[n_ok : n_ok + len(imgs)] = imgs
                n_ok += len(imgs)
                skipped += skips
                advance(stop - start)
            return out[:n_ok], skipped
        # Chunks of ~n / (8 * workers) files; each result lands at its chunk's start and the
        # gaps left by skipped files are closed afterwards (in place, in order).
        size = max(16, min(_MAX_CHUNK, math.ceil(n / (8 * workers))))
        bounds = [(s, min(n, s + size)) for s in range(0, n, size)]
        kept: dict[int, int] = {}
        try:
            # The platform's default start method (fork on Linux before Python 3.14), as
            # torch's DataLoader does: scripts need no `if __name__ == "__main__":` guard there.
            with ProcessPoolExecutor(min(workers, len(bounds))) as ex:
                futures = {
                    ex.submit(_decode_chunk, chunk_src, s, source.items[s:e], *args): (s, e)
                    for s, e in bounds
                }
                try:
                    for fut in as_completed(futures):
                        s, e = futures[fut]
                        imgs, skips = fut.result()
                        out[s : s + len(imgs)] = imgs
                        kept[s] = len(imgs)
                        skipped += skips
                        advance(e - s)
                except BaseException:  # Ctrl-C or an error: do not decode the rest first
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise
        except BrokenProcessPool as e:
            raise DataError(
                f"a decoding worker crashed reading {source.label}; "
                "rerun with workers=1 to find the file that crashes the decoder"
            ) from e
    n_ok = 0
    for s, _ in bounds:
        k = kept[s]
        if n_ok != s:
            out[n_ok : n_ok + k] = out[s : s + k]  # numpy copies safely when ranges overlap
        n_ok += k
    return out[:n_ok], sorted(skipped)


def _load_idx(
    source: Source,
    resolution: int,
    channels: int,
    fit: str,
    background: tuple[int, int, int],
    progress: bool,
) -> np.ndarray:
    """Read and concatenate IDX files -> (N, C, R, R) uint8, resized in-process if R != size."""
    arrays = [read_idx_images(f) for f in source.items]  # each (n, rows, cols)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{source.label}: the IDX files hold different sizes {sorted(shapes)}")
    n = sum(len(a) for a in arrays)
    if n == 0:
        raise DataError(f"{source.label} holds no images (the IDX header says 0)")
    rows, cols = arrays[0].shape[1:]
    out = _allocate(n, channels, resolution, source.label)
    if (rows, cols) == (resolution, resolution):  # fast path: no per-image PIL work
        i = 0
        for a in arrays:
            out[i : i + len(a)] = a[:, None]  # (n, 1, R, R), broadcast to C
            i += len(a)
        return out
    with _progress(progress, n, source.label) as advance:
        i = 0
        for a in arrays:
            for img in a:  # (rows, cols)
                big = fit_resize(Image.fromarray(img, "L"), resolution, fit, background)
                out[i] = np.asarray(big)[None]  # (1, R, R), broadcast to C
                i += 1
                if i % 1000 == 0:
                    advance(1000)
        advance(n % 1000)
    return out


def load_dataset(
    path: str | os.PathLike,
    resolution: int,
    channels: int,
    fit: str = "crop",
    background: tuple[int, int, int] = (255, 255, 255),
    workers: int | None = None,
    progress: bool = False,
    labels: bool = False,
) -> ImageSet:
    """Load every image under ``path`` as (N, C, R, R) uint8 at ``resolution``.

    path: a folder of .png .jpg .jpeg .webp .bmp files (recursive, sorted), a .zip or .tar
        (.tar.gz, .tgz, .tar.bz2, .tar.xz) of them,
        an IDX image file (*-images-idx3-ubyte, raw or .gz) or a folder holding IDX files
        (train-images-idx3-ubyte[.gz] if present, else all of them, sorted and concatenated),
        or "builtin:<name>" for a sample shipped in the package (see ``BUILTIN_DATASETS``).
    channels: 1 = grey (L), 3 = RGB (grey sources replicated).
    fit: "crop" (shorter side -> R, centre crop) or "pad" (longer side -> R, centred on
        ``background``); Lanczos filter, up- and downscaling. Alpha is blended onto ``background``.
    workers: decoding processes for more than 256 files (default: the usable CPUs).
    progress: show a rich progress bar on stderr while decoding.
    labels: also read each image's class (``gantool.data.sources.read_labels``: class
        sub-folders, a dataset.json, IDX labels files); DataError when there are none.

    Unreadable files are listed in ``ImageSet.skipped``; everything else that is wrong with
    the input raises ``gantool.errors.DataError`` with a one-line message.
    """
    _check_options(resolution, channels, fit, background, workers)
    background = tuple(int(v) for v in background)  # type: ignore[assignment]
    source = resolve_source(path)
    classes, names = read_labels(source) if labels else (None, ())  # before decoding: fail fast
    if source.kind == "idx":
        images = _load_idx(source, resolution, channels, fit, background, progress)
        if classes is not None and len(classes) != len(images):
            raise DataError(f"{source.label}: {len(images):,} images but {len(classes):,} labels; "
                            "the images and labels files must belong together")
        return ImageSet(images, f"{source.label} ({len(images):,} images)", (), classes, names)
    images, skipped = _load_images(
        source, resolution, channels, fit, background, workers or usable_cpus(), progress
    )
    if len(images) == 0:
        file, reason = skipped[0][1:]
        raise DataError(
            f"none of the {len(source.items):,} image files under {source.root} could be read; "
            f"first error: {file}: {reason}"
        )
    if classes is not None:  # the labels of the images that could be read
        classes = np.delete(classes, [i for i, _, _ in skipped])
    return ImageSet(
        images, f"{source.label} ({len(images):,} images)", tuple((f, r) for _, f, r in skipped),
        classes, names,
    )
