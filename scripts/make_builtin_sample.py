"""Build gantool/data/builtin/fashion-mnist/ from the upstream Fashion-MNIST training set.

    python scripts/make_builtin_sample.py /path/to/fashion-mnist [--per-class 600]

Takes the first ``per-class`` images of each class in file order (6,000 by default), keeps
their file order, and writes gzip IDX files with mtime=0 so the output is byte-reproducible.
Also copies the upstream LICENSE and writes NOTICE.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "gantool" / "data" / "builtin" / "fashion-mnist"
CLASSES = "T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot"


def read_idx(path: Path, magic: int) -> np.ndarray:
    """A gzip IDX file -> uint8 array shaped as its header says; checks magic and length."""
    raw = gzip.decompress(path.read_bytes())
    ndim = magic & 0xFF
    head = struct.unpack(f">{1 + ndim}I", raw[: 4 * (1 + ndim)])
    if head[0] != magic:
        raise SystemExit(f"{path}: magic {head[0]}, expected {magic}")
    data = np.frombuffer(raw, np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(head[1:])):
        raise SystemExit(f"{path}: {data.size} bytes of data, header says {head[1:]}")
    return data.reshape(head[1:])


def write_idx_gz(path: Path, magic: int, array: np.ndarray) -> None:
    """uint8 array -> gzip IDX file, byte-reproducible (mtime=0, no file name in the header)."""
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder with train-{images,labels}-*-ubyte.gz")
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    images = read_idx(args.source / "train-images-idx3-ubyte.gz", 2051)  # (60000, 28, 28)
    labels = read_idx(args.source / "train-labels-idx1-ubyte.gz", 2049)  # (60000,)
    keep = np.sort(
        np.concatenate([np.flatnonzero(labels == c)[: args.per_class] for c in range(10)])
    )  # file order
    if len(keep) != 10 * args.per_class:
        raise SystemExit(f"only {len(keep)} images found for {args.per_class} per class")

    args.out.mkdir(parents=True, exist_ok=True)
    write_idx_gz(args.out / "train-images-idx3-ubyte.gz", 2051, images[keep])
    write_idx_gz(args.out / "train-labels-idx1-ubyte.gz", 2049, labels[keep])
    shutil.copyfile(args.source / "LICENSE", args.out / "LICENSE")
    n = len(keep)
    (args.out / "NOTICE.md").write_text(
        f"""# Fashion-MNIST sample (builtin:fashion-mnist)

{n:,} images (28x28 grey, uint8) with their labels, in their original order: the first
{args.per_class} images of each of the 10 classes of the Fashion-MNIST training set
(`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`; all kept images lie among
its first {keep[-1] + 1:,} of 60,000). Classes 0-9: {CLASSES}.

Source: Fashion-MNIST, Han Xiao, Kashif Rasul, Roland Vollgraf (2017), "Fashion-MNIST:
a Novel Image Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747,
https://github.com/zalandoresearch/fashion-mnist. Copyright (c) 2017 Zalando SE,
MIT licence: see LICENSE in this folder.

Rebuilt byte for byte by `python scripts/make_builtin_sample.py <fashion-mnist folder>`.
"""
    )
    for f in sorted(args.out.iterdir()):
        print(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}  ({f.stat().st_size:,} B)")


if __name__ == "__main__":
    main()
