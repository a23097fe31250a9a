"""Find the images a dataset path names: a folder, a .zip or .tar archive, IDX files, or a builtin
sample; and their class labels (``read_labels``).

``resolve_source`` only lists files (cheap); decoding happens in ``gantool.data.dataset``.
Names starting with "." and ``__MACOSX`` folders (macOS resource forks) are ignored.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gantool.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 2049
BUILTIN_ROOT = Path(__file__).resolve().parent / "builtin"
BUILTIN_DATASETS: dict[str, str] = {
    "fashion-mnist": "6,000 Fashion-MNIST training images (600 per class), 28x28 grey, MIT",
}

_IDX_NAME = re.compile(r"images[-.]idx3-ubyte(\.gz)?$", re.IGNORECASE)
_EXTS = " ".join(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class Source:
    """What to decode: ``items`` are paths relative to ``root`` (folder), member names (zip,
    tar), or absolute IDX file paths (idx); ``label`` names the dataset in messages."""

    kind: Literal["folder", "zip", "tar", "idx"]
    root: Path
    items: tuple[str, ...]
    label: str

    def item_name(self, item: str) -> str:
        """A readable name for one item, e.g. for the ``skipped`` list."""
        return item if self.kind == "idx" else f"{self.root}/{item}"


def _hidden(rel: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/") if p)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _scan_folder(root: Path) -> list[str]:
    """Image files under ``root`` (recursive, following links once), sorted POSIX-relative paths."""
    found: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for f in filenames:  # regular files only: opening a FIFO named x.png would block
            if _is_image(f) and not _hidden(f) and os.path.isfile(os.path.join(dirpath, f)):
                found.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return sorted(found)


def _idx_files_in(folder: Path) -> list[Path]:
    """IDX image files directly in ``folder``: train-images-idx3-ubyte[.gz] if present, else all.

    Where both a raw file and its .gz are present, the raw one is read.
    """
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and _IDX_NAME.search(p.name) and not p.name.startswith("."):
            stem = p.name[:-3] if p.name.lower().endswith(".gz") else p.name
            if stem not in by_stem or not p.name.lower().endswith(".gz"):
                by_stem[stem] = p
    train = [p for s, p in by_stem.items() if s.lower().startswith("train-images")]
    return train[:1] if train else [by_stem[s] for s in sorted(by_stem)]


def _peek_idx_magic(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            raw = f.read(4)
        return struct.unpack(">I", raw)[0] if len(raw) == 4 else None
    except (OSError, EOFError, zlib.error):
        return None


def builtin_path(name: str) -> Path:
    """The folder of a shipped sample; DataError naming the known ones if ``name`` is unknown."""
    key = name.strip().lower()
    if key not in BUILTIN_DATASETS:
        known = ", ".join(f"builtin:{k}" for k in BUILTIN_DATASETS)
        raise DataError(f"unknown builtin dataset 'builtin:{name}'; known: {known}")
    folder = BUILTIN_ROOT / key
    if not folder.is_dir():
        raise DataError(f"the builtin sample {folder} is missing; reinstall gantool")
    return folder


def resolve_source(path: str | os.PathLike) -> Source:
    """Classify ``path`` and list what it holds, in a deterministic (sorted) order."""
    if isinstance(path, str) and path.startswith("builtin:"):
        return _builtin_source(path[len("builtin:") :])
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"dataset path {p} does not exist; pass a folder, .zip or .tar of images, "
            "an IDX file (*-images-idx3-ubyte[.gz]) or builtin:fashion-mnist"
        )
    if p.is_dir():
        return _folder_source(p)
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                names = [i.filename for i in z.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{p} is not a readable zip archive ({e}); check the file") from e
        return _archive_source("zip", p, names)
    if p.suffix.lower() == ".zip":
        raise DataError(f"{p} is not a readable zip archive; check the file")
    if "idx3" in p.name.lower() or _peek_idx_magic(p) == IDX_IMAGES_MAGIC:
        return Source("idx", p.parent, (str(p),), f"IDX {p}")
    if _looks_like_tar(p):
        try:
            with tarfile.open(p) as t:
                names = [m.name for m in t.getmembers() if m.isfile()]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{p} is not a readable tar archive ({why}); check the file") from None
        return _archive_source("tar", p, names)
    raise DataError(
        f"{p} is not a folder, a .zip or .tar of images or an IDX image file "
        "(*-images-idx3-ubyte[.gz]); put single images in a folder"
    )


def _builtin_source(name: str) -> Source:
    files = _idx_files_in(builtin_path(name))
    if not files:
        raise DataError(f"the builtin sample {name} has no IDX files; reinstall gantool")
    return Source("idx", files[0].parent, tuple(str(f) for f in files), f"builtin:{name}")


def _folder_source(p: Path) -> Source:
    """A folder of images (any depth), or of IDX files."""
    images = _scan_folder(p)
    if images:
        return Source("folder", p, tuple(images), f"folder {p}")
    idx = _idx_files_in(p)
    if len(idx) == 1:
        return Source("idx", p, (str(idx[0]),), f"IDX {idx[0]}")
    if idx:
        label = f"IDX {p}: {' + '.join(f.name for f in idx)}"
        return Source("idx", p, tuple(str(f) for f in idx), label)
    raise DataError(f"no images ({_EXTS}) found under {p}; add image files or IDX files")


def _archive_source(kind: str, p: Path, names: list[str]) -> Source:
    """A zip or tar archive's image members (hidden ones left out), sorted."""
    images = sorted(n for n in names if _is_image(n) and not _hidden(n))
    if not images:
        raise DataError(f"no images ({_EXTS}) found under {p}; add image files to the archive")
    return Source(kind, p, tuple(images), f"{kind} {p}")


TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _looks_like_tar(p: Path) -> bool:
    if p.name.lower().endswith(TAR_SUFFIXES):
        return True
    try:
        return tarfile.is_tarfile(p)
    except (OSError, EOFError, zlib.error, tarfile.TarError):
        return False


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """An IDX image file (raw or gzip) -> (N, rows, cols) uint8; DataError if malformed."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {p} ({e.strerror or e})") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{p} is a damaged gzip file ({e}); download it again") from e
    if len(raw) < 16:
        raise DataError(f"{p} is truncated ({len(raw)} bytes, no IDX header); download it again")
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IDX_IMAGES_MAGIC:
        hint = " (that is a labels file)" if magic == IDX_LABELS_MAGIC else ""
        raise DataError(
            f"{p} is not an IDX image file: magic {magic}{hint}, expected {IDX_IMAGES_MAGIC}; "
            "pass a *-images-idx3-ubyte[.gz] file"
        )
    need = n * rows * cols
    have = len(raw) - 16
    if have != need:
        what = "truncated" if have < need else "longer than its header says"
        raise DataError(
            f"{p} is {what}: header says {n:,} images of {rows}x{cols} ({need:,} bytes), "
            f"found {have:,} bytes; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=need, offset=16).reshape(n, rows, cols)


# -- class labels ---------------------------------------------------------------------------------

LABELS_FILE = "dataset.json"  # stylegan2-ada's convention: {"labels": [["file", label], ...]}
CLASS_NAMES_FILE = "classes.txt"  # beside IDX files: one class name per line, in label order


def read_labels(source: Source) -> tuple[np.ndarray, tuple[str, ...]]:
    """The class of every item of ``source``, (N,) int64 in item order, and the class names.

    IDX images: the labels file beside each images file (``*-labels-idx1-ubyte[.gz]``), names
    from ``classes.txt`` there (else the label numbers). Folders, zips and tars: a
    ``dataset.json`` at the top (``{"labels": [[file, label], ...]}``, labels 0..K-1, optional
    ``"classes": [names]``), else one sub-folder per class (the ImageFolder convention: the
    first folder of each path is its class, names sorted). DataError with one line otherwise."""
    if source.kind == "idx":
        labels = np.concatenate([read_idx_labels(_labels_beside(Path(f))) for f in source.items])
        k = int(labels.max()) + 1 if len(labels) else 0
        names_file = Path(source.items[0]).parent / CLASS_NAMES_FILE
        names = (tuple(n.strip() for n in names_file.read_text().splitlines() if n.strip())
                 if names_file.is_file() else tuple(str(i) for i in range(k)))
        if len(names) < k:
            raise DataError(f"{names_file} names {len(names)} classes, but the labels go up to "
                            f"{k - 1}; give one name per line for each label")
        return labels.astype(np.int64), names
    listed = _dataset_json(source)
    if listed is not None:
        return listed
    return _class_folders(source)


def _labels_beside(images: Path) -> Path:
    """train-images-idx3-ubyte[.gz] -> the train-labels-idx1-ubyte[.gz] next to it."""
    stem = re.sub(r"images([-.])idx3", r"labels\1idx1", images.name, flags=re.IGNORECASE)
    stem = stem[:-3] if stem.lower().endswith(".gz") else stem
    for name in (stem, stem + ".gz"):
        if (images.parent / name).is_file():
            return images.parent / name
    raise DataError(f"no labels file for {images} (looked for {stem}[.gz] beside it); "
                    "add it, or train without class labels")


def read_idx_labels(path: Path) -> np.ndarray:
    """An IDX labels file (raw or gzip) -> (N,) uint8; DataError if malformed."""
    try:
        raw = path.read_bytes()
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} ({e}); download it again") from None
    if len(raw) < 8 or struct.unpack(">I", raw[:4])[0] != IDX_LABELS_MAGIC:
        raise DataError(f"{path} is not an IDX labels file (magic {IDX_LABELS_MAGIC}); "
                        "pass the *-labels-idx1-ubyte[.gz] file that belongs to the images")
    n = struct.unpack(">I", raw[4:8])[0]
    if len(raw) - 8 != n:
        raise DataError(f"{path} is damaged: its header says {n:,} labels, it holds "
                        f"{len(raw) - 8:,}; download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).copy()


def _read_member(source: Source, name: str) -> bytes | None:
    """A top-level file of a folder, zip or tar source; None when it has none of that name."""
    try:
        if source.kind == "folder":
            p = source.root / name
            return p.read_bytes() if p.is_file() else None
        if source.kind == "zip":
            with zipfile.ZipFile(source.root) as z:
                return z.read(name) if name in z.namelist() else None
        with tarfile.open(source.root) as t:
            member = next((m for m in t.getmembers() if m.isfile()
                           and m.name.removeprefix("./") == name), None)
            f = t.extractfile(member) if member is not None else None
            return f.read() if f is not None else None
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {name} in {source.root} ({e})") from None


def _dataset_json(source: Source) -> tuple[np.ndarray, tuple[str, ...]] | None:
    import json

    raw = _read_member(source, LABELS_FILE)
    if raw is None:
        return None
    where = f"{source.root}/{LABELS_FILE}" if source.kind == "folder" else \
        f"{LABELS_FILE} in {source.root}"
    try:
        doc = json.loads(raw)
        pairs = doc["labels"]
        by_file = {str(f).removeprefix("./"): v for f, v in pairs}
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{where} is not a labels file ({type(e).__name__}: {e}); it must hold "
                        '{"labels": [["file", class], ...]}') from None
    labels = []
    for item in source.items:
        value = by_file.get(item.removeprefix("./"))
        if value is None:
            raise DataError(f"{item} has no label in {where}; label every image, or remove it")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"{item}: label {value!r} in {where} is not a class number "
                            "(0, 1, 2, ...)")
        labels.append(value)
    names = doc.get("classes", [str(i) for i in range(max(labels) + 1)])
    if not isinstance(names, list):
        raise DataError(f'{where}: "classes" must be a list of class names')
    for item, value in zip(source.items, labels):
        if value >= len(names):
            raise DataError(f'{item}: label {value} in {where} is outside its "classes" list '
                            f"({len(names)} names)")
    return np.asarray(labels, dtype=np.int64), tuple(str(n) for n in names)


def _class_folders(source: Source) -> tuple[np.ndarray, tuple[str, ...]]:
    top = [item for item in source.items if "/" not in item.removeprefix("./")]
    if top:
        raise DataError(f"{source.root} has images outside class folders (e.g. {top[0]}): for "
                        f"class labels put each class in its own sub-folder, or add a "
                        f"{LABELS_FILE} of [file, class] pairs")
    first = [item.removeprefix("./").split("/", 1)[0] for item in source.items]
    names = tuple(sorted(set(first)))
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[f] for f in first], dtype=np.int64), names
