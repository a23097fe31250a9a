"""The output stage of a render: encoders, the pipeline, and the cores' limit.

Measures, each in its own fresh process, with the same images and the same seeds:

* ``encode`` (one per encoder): one thread turning ready uint8 images into files
  (``save_image``: encode, atomic write, no per-file fsync, as in a render): the single-core
  encode rate E. Encoders: ``pillow-default`` (Pillow's PNG defaults, what gantool wrote before),
  ``pillow-fast`` (the fallback without fpng: zlib level 1, run-length strategy), ``fpng``,
  ``jpg`` and ``webp`` (quality 95), ``npy``;
* ``generate``: the generator alone, G images/s, nothing written;
* ``render`` (per PNG encoder): ``gantool.sampling.render.render_seeds`` with its defaults (one
  worker per core, threads or processes as the encoder needs), R images/s.

The table gives R / min(G, E x cores): 1.0 means the pipeline runs as fast as its slower stage
allows. The generator is ``instant`` by default: it returns ready images (Twemoji from
``shared/data/twemoji-64`` upscaled bilinearly with Gaussian noise of sigma 4, a texture like a
GAN's; smooth random fields where that folder is absent), copied into a fresh array per batch as
a backend's output is; so the output stage is what is measured. ``--generator torch`` uses a
DCGAN with random weights (``--ngf``) instead.

    python benchmarks/render.py --resolution 1024            # 600 images, 3 repeats
    python benchmarks/render.py --resolution 256 --images 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from harness import loadavg, random_checkpoint, run_json, spread

ENCODERS = ("pillow-default", "pillow-fast", "fpng", "jpg", "webp", "npy")
RENDERERS = ("pillow-fast", "fpng")
TWEMOJI = Path(__file__).resolve().parents[2] / "shared/data/twemoji-64/twemoji-64.tar"


class InstantGenerator:
    """The Generator protocol over a pool of ready images: seed s gets image s % pool."""

    nz, prior, default_truncation, channels = 8, "normal", None, 3

    def __init__(self, resolution: int, pool: int = 32, noise: float = 4.0):
        import numpy as np

        self.resolution = resolution
        rng = np.random.default_rng(0)
        self.images = np.stack([np.clip(x + rng.normal(0, noise, x.shape), 0, 255)
                                .astype(np.uint8) for x in _pictures(pool, resolution, rng)])

    def generate(self, seeds, truncation):
        return self.images[[s % len(self.images) for s in seeds]]  # a fresh (B, H, W, 3) array


def _pictures(n: int, size: int, rng):
    """n float32 (size, size, 3) pictures: Twemoji on white, or smooth random colour fields."""
    import numpy as np
    from PIL import Image

    if not TWEMOJI.is_file():
        return [np.asarray(Image.fromarray(rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8))
                           .resize((size, size), Image.BICUBIC), np.float32) for _ in range(n)]
    out = []
    with tarfile.open(TWEMOJI) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.endswith(".png")),
                         key=lambda m: m.name)
        for i in range(n):
            im = Image.open(tar.extractfile(members[(i * 97) % len(members)])).convert("RGBA")
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im).convert("RGB")
            out.append(np.asarray(im.resize((size, size), Image.BILINEAR), np.float32))
    return out


def _encoding(name: str):
    if name == "pillow-fast":
        sys.modules["fpng"] = None  # as if the fastpng extra were not installed
    from gantool.sampling.images import Encoding

    return {"pillow-default": Encoding(png_level=6), "jpg": Encoding("jpg"),
            "webp": Encoding("webp"), "npy": Encoding("npy")}.get(name, Encoding())


def worker(args) -> dict:
    encoding = _encoding(args.encoder)
    import torch

    from gantool.sampling.images import save_image, seed_filename
    from gantool.sampling.render import render_seeds
    from gantool.system import usable_cpus

    torch.set_num_threads(args.threads)
    if args.generator == "torch":
        from gantool.backends import load_backend

        gen = load_backend("torch", args.ckpt, device="cpu")
    else:
        gen = InstantGenerator(args.resolution)
    seeds = list(range(args.images))
    out = Path(args.out)
    if args.worker == "encode":
        images = gen.generate(seeds[: args.batch], None)
        assert encoding.encoder(3) == {"fpng": "fpng", "npy": "numpy"}.get(args.encoder,
                                                                            "pillow")
        n = max(args.images // (8 if args.encoder.startswith(("pillow", "webp")) else 1), 16)
        t0 = time.perf_counter()
        nbytes = 0
        for i in range(n):
            path = out / seed_filename(i, encoding.fmt)
            nbytes += save_image(images[i % len(images)], path, False, encoding).stat().st_size
        return {"images_per_s": n / (time.perf_counter() - t0), "mb_per_image": nbytes / n / 1e6}
    if args.worker == "generate":
        gen.generate(seeds[: args.batch], None)  # warm-up
        t0 = time.perf_counter()
        for i in range(0, args.images, args.batch):
            gen.generate(seeds[i : i + args.batch], None)
        return {"images_per_s": args.images / (time.perf_counter() - t0)}
    gen.generate(seeds[: args.batch], None)  # warm-up
    stats = render_seeds(gen, seeds, None, args.batch, outdir=out, encoding=encoding,
                         progress=False)
    assert stats["written"] == args.images
    return {"images_per_s": stats["images_per_s"], "workers": usable_cpus()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--generator", choices=("instant", "torch"), default="instant")
    ap.add_argument("--ngf", type=int, default=4, help="--generator torch: its width")
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    ap.add_argument("--threads", type=int, default=2, help="torch threads in every worker")
    ap.add_argument("--json")
    ap.add_argument("--worker", choices=("encode", "generate", "render"), help=argparse.SUPPRESS)
    ap.add_argument("--encoder", default="fpng", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    encoders = [e for e in args.encoders.split(",") if e]
    contenders = ([("encode", e) for e in encoders] + [("generate", "")]
                  + [("render", e) for e in RENDERERS if e in encoders])
    print(f"load average before: {loadavg()}")
    print("images: " + ("Twemoji, upscaled, noise sigma 4" if TWEMOJI.is_file() else
                        "smooth random fields (no shared/data/twemoji-64 here)")
          if args.generator == "instant" else f"DCGAN ngf {args.ngf}, random weights")
    t0, runs = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = (random_checkpoint(Path(tmp) / "ckpt", args.resolution, args.ngf)[0]
                if args.generator == "torch" else "")
        for r in range(args.repeats):
            row = {}
            for kind, enc in contenders if r % 2 == 0 else contenders[::-1]:
                out = Path(tmp) / f"{kind}-{enc}-{r}"
                argv = [sys.executable, __file__, "--worker", kind, "--encoder", enc or "npy",
                        "--ckpt", str(ckpt), "--out", str(out), "--images", str(args.images),
                        "--batch", str(args.batch), "--threads", str(args.threads),
                        "--resolution", str(args.resolution), "--generator", args.generator]
                res = run_json(argv, f"{kind} {enc}")
                row[f"{kind} {enc}".strip()] = res["images_per_s"]
                if "mb_per_image" in res:
                    row[f"MB {enc}"] = res["mb_per_image"]
                row["workers"] = res.get("workers", row.get("workers"))
                _remove(out)
            runs.append(row)
    cores = next(r["workers"] for r in runs if r.get("workers"))
    for row in runs:
        for enc in RENDERERS:
            if f"render {enc}" in row:
                limit = min(row["generate"], row[f"encode {enc}"] * cores)
                row[f"R/limit {enc}"] = row[f"render {enc}"] / limit
    med = {k: spread([r[k] for r in runs if k in r]) for k in runs[0] if k != "workers"}
    base = med.get("encode pillow-default", (None,))[0]
    print(f"\n{args.resolution} px, {args.images} images, batch {args.batch}, {cores} cores, "
          f"{args.repeats} repeats: medians (min-max)")
    for enc in encoders:
        e = med[f"encode {enc}"]
        vs = f"  {e[0] / base:5.1f}x pillow-default" if base else ""
        print(f"  encode {enc:15s} E = {e[0]:8.1f} img/s ({e[1]:.1f}-{e[2]:.1f}), "
              f"{med[f'MB {enc}'][0]:.2f} MB/image{vs}")
    print(f"  generate            G = {med['generate'][0]:8.1f} img/s")
    for enc in RENDERERS:
        if f"render {enc}" in med:
            r, q = med[f"render {enc}"], med[f"R/limit {enc}"]
            print(f"  render {enc:12s} R = {r[0]:8.1f} img/s ({r[1]:.1f}-{r[2]:.1f});  "
                  f"R / min(G, E x {cores}) = {q[0]:.2f} ({q[1]:.2f}-{q[2]:.2f})")
    print(f"load average after: {loadavg()}  (wall {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": med, "cores": cores,
                                               "args": vars(args)}, indent=2))


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
