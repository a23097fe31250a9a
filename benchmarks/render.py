"""The output stage of a render: encoders, the pipeline, and the cores' limit.

Measures, each in its own fresh process, with the same images and the same seeds:

* ``encode`` (one per encoder): one thread turning ready uint8 images into files
  (``save_image``: encode, atomic write, no per-file fsync, as in a render): the single-core
  encode rate E; ``encode-all``: one such process per core at once, the rate the cores reach
  together with no pipeline at all (below E x cores where they share memory bandwidth and the
  kernel's page-cache work). Encoders: ``pillow-default`` (Pillow's PNG defaults, what gantool
  wrote before), ``pillow-fast`` (the fallback without fpng: zlib level 1, run-length
  strategy), ``fpng``, ``jpg`` and ``webp`` (quality 95), ``npy``;
* ``generate``: the generator alone, G images/s, nothing written;
* ``render`` (per PNG encoder): ``gantool.sampling.pipeline.render_seeds`` with its defaults (one
  worker per core, threads or processes as the encoder needs), R images/s.

The table gives R / min(G, E x cores), the issue's measure: 1.0 means the pipeline runs as fast
as its slower stage allows, and R / encode-all, the same against what the cores measurably reach
together. Every worker also reports its CPU seconds per image (user + system, with its child
processes): the system share is mostly the kernel writing files into the page cache.

The generator is ``instant`` by default: it returns ready images (Twemoji from
``shared/data/twemoji-64`` upscaled bilinearly with Gaussian noise of sigma 4, a texture like a
GAN's; smooth random fields where that folder is absent), copied per batch into a fresh array
(``generate``) or into the render's slot (``generate_into``), as a backend does; so the output
stage is what is measured. ``--generator torch`` uses a
DCGAN with random weights (``--ngf``) instead.

``--layouts flat,subdirs,webdataset`` measures instead ``render_images`` into each output
layout (fpng, or the one ``--encoders`` names), each in its own process, alternating the order
over the repeats, and reports each layout's images/s and its ratio to the flat folder's in the
same repeat (tars of ``--tar-images``, default a quarter of the images, so packing overlaps
rendering as in a long render).

    python benchmarks/render.py --resolution 1024            # 600 images, 3 repeats
    python benchmarks/render.py --resolution 256 --images 3000
    python benchmarks/render.py --resolution 1024 --layouts flat,subdirs,webdataset --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from harness import loadavg, random_checkpoint, run_json, run_json_parallel, spread

from gantool.system import usable_cpus

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

    def generate_into(self, seeds, truncation, out):
        import numpy as np

        np.take(self.images, [s % len(self.images) for s in seeds], axis=0, out=out)


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


class Clock:
    """Wall and CPU time (user + system, the process's and its finished children's)."""

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), os.times()
        return self

    def __exit__(self, *exc):
        c1 = os.times()
        self.wall = time.perf_counter() - self.t0
        self.cpu = sum(c1[i] - self.c0[i] for i in range(4))
        self.sys = sum(c1[i] - self.c0[i] for i in (1, 3))

    def result(self, n: int, **extra) -> dict:
        return {"images_per_s": n / self.wall, "cpu_ms_per_image": 1000 * self.cpu / n,
                "sys_share": self.sys / max(self.cpu, 1e-9), **extra}


def worker(args) -> dict:
    encoding = _encoding(args.encoder)
    from gantool.sampling.draw import render_images
    from gantool.sampling.images import save_image, seed_filename
    from gantool.system import usable_cpus

    if args.generator == "torch":
        import torch

        from gantool.backends import load_backend

        torch.set_num_threads(args.threads)
        gen = load_backend("torch", args.ckpt, device=args.device)
    else:
        gen = InstantGenerator(args.resolution)
    seeds = list(range(args.images))
    out = Path(args.out)
    if args.worker == "encode":
        images = gen.generate(seeds[: args.batch], None)
        assert encoding.encoder(3) == {"fpng": "fpng", "npy": "numpy"}.get(args.encoder,
                                                                            "pillow")
        n = max(args.images // (8 if args.encoder.startswith(("pillow", "webp")) else 1), 16)
        n //= args.share
        _barrier(args.barrier, args.share)  # encode-all: start together, once all are set up
        nbytes = 0
        with Clock() as clock:
            for i in range(n):
                path = out / seed_filename(i, encoding.fmt)
                nbytes += save_image(images[i % len(images)], path, False, encoding).stat(
                    ).st_size
        return clock.result(n, mb_per_image=nbytes / n / 1e6)
    gen.generate(seeds[: args.batch], None)  # warm-up
    if args.worker == "generate":
        with Clock() as clock:
            for i in range(0, args.images, args.batch):
                gen.generate(seeds[i : i + args.batch], None)
        return clock.result(args.images)
    with Clock() as clock:  # the workers' start-up included: a render pays it
        stats = render_images(gen, seeds, None, args.batch, out, layout=args.layout,
                              per_tar=args.tar_images or max(args.images // 4, 1),
                              encoding=encoding, progress=False)
    assert stats["written"] == args.images
    return clock.result(args.images, workers=usable_cpus())


def _barrier(folder: str | None, parties: int) -> None:
    """Wait until ``parties`` workers have reached this point (a file each in ``folder``)."""
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / str(os.getpid())).touch()
    while len(list(Path(folder).iterdir())) < parties:
        time.sleep(0.005)


def measure(args: argparse.Namespace, contenders: list[tuple[str, str]],
            cores: int) -> list[dict]:
    """Every contender once per repeat, each in its own process(es), alternating the order;
    then each repeat's render/limit ratios."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = (random_checkpoint(Path(tmp) / "ckpt", args.resolution, args.ngf)[0]
                if args.generator == "torch" else "")
        for r in range(args.repeats):
            row = {}
            for kind, enc in contenders if r % 2 == 0 else contenders[::-1]:
                out = Path(tmp) / f"{kind}-{enc}-{r}"
                row.update(contender(args, kind, enc, ckpt, out, cores, row))
                _remove(out)
                _remove(Path(f"{out}-ready"))
            runs.append(row)
    for row in runs:
        for enc in RENDERERS:
            if f"render {enc}" in row:
                limit = min(row["generate"], row[f"encode {enc}"] * cores)
                row[f"R/limit {enc}"] = row[f"render {enc}"] / limit
                row[f"R/all {enc}"] = row[f"render {enc}"] / min(row["generate"],
                                                                row[f"encode-all {enc}"])
    return runs


def contender(args: argparse.Namespace, kind: str, enc: str, ckpt, out: Path, cores: int,
              row: dict) -> dict:
    """One contender's run: images/s, CPU ms per image, MB per image and workers."""
    argv = [sys.executable, __file__, "--worker", kind.split("-")[0], "--encoder",
            enc or "npy", "--ckpt", str(ckpt), "--images", str(args.images),
            "--batch", str(args.batch), "--threads", str(args.threads),
            "--resolution", str(args.resolution), "--generator", args.generator,
            "--device", args.device]
    key, got = f"{kind} {enc}".strip(), {}
    if kind == "encode-all":  # one per core, starting together once set up
        start = ["--share", str(cores), "--barrier", f"{out}-ready"]
        parts = run_json_parallel([[*argv, *start, "--out", f"{out}/{i}"]
                                   for i in range(cores)], key)
        res = {"images_per_s": sum(p["images_per_s"] for p in parts),
               "cpu_ms_per_image": spread([p["cpu_ms_per_image"] for p in parts])[0]}
    else:
        res = run_json([*argv, "--out", str(out)], key)
    got[key] = res["images_per_s"]
    got[f"cpu {key}"] = res["cpu_ms_per_image"]
    if "mb_per_image" in res:
        got[f"MB {enc}"] = res["mb_per_image"]
    got["workers"] = res.get("workers", row.get("workers"))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=1024)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--generator", choices=("instant", "torch"), default="instant")
    ap.add_argument("--ngf", type=int, default=4, help="--generator torch: its width")
    ap.add_argument("--device", default="cpu", help="--generator torch: cpu | cuda")
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    ap.add_argument("--threads", type=int, default=2, help="torch threads in every worker")
    ap.add_argument("--layouts", help="compare output layouts instead, e.g. "
                    "flat,subdirs,webdataset")
    ap.add_argument("--tar-images", type=int, default=0,
                    help="--layouts webdataset: images per tar (0: a quarter of --images)")
    ap.add_argument("--json")
    ap.add_argument("--layout", default="flat", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=("encode", "generate", "render"), help=argparse.SUPPRESS)
    ap.add_argument("--encoder", default="fpng", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--share", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--barrier", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.layouts:
        return compare_layouts(args)
    encoders = [e for e in args.encoders.split(",") if e]
    contenders = ([("encode", e) for e in encoders] + [("generate", "")]
                  + [(kind, e) for e in RENDERERS if e in encoders
                     for kind in ("encode-all", "render")])
    cores = usable_cpus()
    print(f"load average before: {loadavg()}")
    print("images: " + ("Twemoji, upscaled, noise sigma 4" if TWEMOJI.is_file() else
                        "smooth random fields (no shared/data/twemoji-64 here)")
          if args.generator == "instant" else f"DCGAN ngf {args.ngf}, random weights")
    t0 = time.perf_counter()
    runs = measure(args, contenders, cores)
    med = {k: spread([r[k] for r in runs if k in r]) for k in runs[0] if k != "workers"}
    base = med.get("encode pillow-default", (None,))[0]
    print(f"\n{args.resolution} px, {args.images} images, batch {args.batch}, {cores} cores, "
          f"{args.repeats} repeats: medians (min-max)")
    for enc in encoders:
        e = med[f"encode {enc}"]
        vs = f"  {e[0] / base:5.1f}x pillow-default" if base else ""
        print(f"  encode {enc:15s} E = {e[0]:8.1f} img/s ({e[1]:.1f}-{e[2]:.1f}), "
              f"{med[f'MB {enc}'][0]:.2f} MB/image, {med[f'cpu encode {enc}'][0]:.1f} "
              f"CPU ms/image{vs}")
    print(f"  generate                G = {med['generate'][0]:8.1f} img/s")
    for enc in RENDERERS:
        if f"render {enc}" in med:
            a, r = med[f"encode-all {enc}"], med[f"render {enc}"]
            q, qa = med[f"R/limit {enc}"], med[f"R/all {enc}"]
            print(f"  encode-all {enc:11s}   = {a[0]:8.1f} img/s ({a[1]:.1f}-{a[2]:.1f}), "
                  f"{med[f'cpu encode-all {enc}'][0]:.1f} CPU ms/image")
            print(f"  render {enc:15s} R = {r[0]:8.1f} img/s ({r[1]:.1f}-{r[2]:.1f}), "
                  f"{med[f'cpu render {enc}'][0]:.1f} CPU ms/image")
            print(f"    R / min(G, E x {cores}) = {q[0]:.2f} ({q[1]:.2f}-{q[2]:.2f});  "
                  f"R / min(G, encode-all) = {qa[0]:.2f} ({qa[1]:.2f}-{qa[2]:.2f})")
    print(f"load average after: {loadavg()}  (wall {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": med, "cores": cores,
                                               "args": vars(args)}, indent=2))


def compare_layouts(args: argparse.Namespace) -> None:
    """images/s of a render into each layout, and each one's ratio to flat in the same repeat."""
    layouts = args.layouts.split(",")
    enc = args.encoders if args.encoders in ENCODERS else "fpng"
    print(f"load average before: {loadavg()}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            row = {}
            for layout in layouts if r % 2 == 0 else layouts[::-1]:
                out = Path(tmp) / f"{layout}-{r}"
                row[layout] = run_json([
                    sys.executable, __file__, "--worker", "render", "--encoder", enc,
                    "--images", str(args.images), "--batch", str(args.batch),
                    "--resolution", str(args.resolution), "--layout", layout,
                    "--tar-images", str(args.tar_images), "--out", str(out)], layout)
                _check_layout(out, layout, args.images)
                _remove(out)
            runs.append(row)
    print(f"\n{args.resolution} px, {args.images} images, {enc}, batch {args.batch}, "
          f"{usable_cpus()} cores, {args.repeats} repeats: medians (min-max)")
    med = {}
    for layout in layouts:
        rate = spread([r[layout]["images_per_s"] for r in runs])
        ratio = spread([r[layout]["images_per_s"] / r[layouts[0]]["images_per_s"]
                        for r in runs])
        med[layout] = {"images_per_s": rate, f"vs {layouts[0]}": ratio}
        print(f"  {layout:11s} {rate[0]:8.1f} img/s ({rate[1]:.1f}-{rate[2]:.1f})   "
              f"{ratio[0]:.2f}x {layouts[0]} ({ratio[1]:.2f}-{ratio[2]:.2f})")
    print(f"load average after: {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": med,
                                               "args": vars(args)}, indent=2))


def _check_layout(out: Path, layout: str, images: int) -> None:
    """The render wrote every image where its layout puts it (a fast wrong render is no
    result)."""
    if layout == "webdataset":
        count = sum(len(tarfile.open(t).getnames()) for t in out.glob("*.tar")) // 2
    else:
        count = len(list(out.rglob("seed*.*")))
    assert count == images, f"{layout}: {count} images of {images}"


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
