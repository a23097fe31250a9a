"""Rendering to disk vs the cores' PNG-encoding limit.

Three measurements on the same generator (torch backend, DCGAN at ``--resolution`` with
``--ngf``; random weights) and the same seeds, each in its own fresh process:

* ``encode``: one thread turning ready uint8 images into PNG files (``save_image``, atomic,
  no per-file fsync as in a render), the single-process encode rate E; the limit is E x cores;
* ``generate``: the backend alone, G images/s, nothing written;
* ``render``: ``gantool.sampling.render.render_seeds`` to PNG files with one encoding thread per
  core, generation overlapping encoding: R images/s.

Generation and encoding share the same cores, so R can reach neither limit alone; the table
gives R / (E x cores) and R / the shared-core bound 1 / (1/G + 1/(E x cores)).

    python benchmarks/render.py                        # 256 px, ngf 16, 256 images, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from harness import loadavg, random_checkpoint, run_json, spread

KINDS = ("encode", "generate", "render")


def worker(args) -> dict:
    import torch

    from gantool.backends import load_backend
    from gantool.sampling.images import save_image, seed_filename
    from gantool.sampling.render import default_workers, render_seeds

    torch.set_num_threads(args.threads)
    gen = load_backend("torch", args.ckpt, device="cpu")
    seeds = list(range(args.images))
    out = Path(args.out)
    if args.worker == "encode":
        images = gen.generate(seeds[: args.batch], None)
        t0 = time.perf_counter()
        for i in range(args.images):
            save_image(images[i % len(images)], out / seed_filename(i), durable=False)
        return {"images_per_s": args.images / (time.perf_counter() - t0)}
    if args.worker == "generate":
        gen.generate(seeds[: args.batch], None)  # warm-up
        t0 = time.perf_counter()
        for i in range(0, args.images, args.batch):
            gen.generate(seeds[i : i + args.batch], None)
        return {"images_per_s": args.images / (time.perf_counter() - t0)}
    gen.generate(seeds[: args.batch], None)  # warm-up
    stats = render_seeds(gen, seeds, None, args.batch, outdir=out, progress=False)
    return {"images_per_s": stats["images_per_s"], "workers": default_workers()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads in every worker")
    ap.add_argument("--json")
    ap.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"load average before: {loadavg()}")
    t0, runs = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint(Path(tmp) / "ckpt", args.resolution, args.ngf)[0]
        for r in range(args.repeats):
            row = {}
            for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
                out = Path(tmp) / f"{kind}{r}"
                argv = [sys.executable, __file__, "--worker", kind, "--ckpt", str(ckpt),
                        "--out", str(out), "--images", str(args.images), "--batch",
                        str(args.batch), "--threads", str(args.threads)]
                res = run_json(argv, kind)
                row[kind] = res["images_per_s"]
                row["workers"] = res.get("workers", row.get("workers"))
            limit = row["encode"] * row["workers"]
            row["vs_encode_limit"] = row["render"] / limit
            row["vs_shared_bound"] = row["render"] * (1 / row["generate"] + 1 / limit)
            runs.append(row)
    med = {k: spread([r[k] for r in runs]) for k in (*KINDS, "vs_encode_limit",
                                                      "vs_shared_bound")}
    cores = runs[0]["workers"]
    print(f"{args.resolution} px PNG, {args.images} images, batch {args.batch}, {cores} cores, "
          f"{args.repeats} repeats (medians, min-max)")
    print(f"  encode, 1 thread      E = {med['encode'][0]:8.1f} img/s  -> cores' limit "
          f"{med['encode'][0] * cores:.1f}")
    print(f"  generate only         G = {med['generate'][0]:8.1f} img/s")
    print(f"  render to disk        R = {med['render'][0]:8.1f} img/s")
    print(f"  R / (E x cores)       {med['vs_encode_limit'][0]:.2f}x "
          f"({med['vs_encode_limit'][1]:.2f}-{med['vs_encode_limit'][2]:.2f})")
    print(f"  R / shared-core bound {med['vs_shared_bound'][0]:.2f}x "
          f"({med['vs_shared_bound'][1]:.2f}-{med['vs_shared_bound'][2]:.2f})")
    print(f"load average after: {loadavg()}  (wall {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
