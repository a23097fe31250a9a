"""Latent-walk videos against rendering the same number of images: what a walk costs.

Each contender is the real CLI in its own fresh process, on one DCGAN generator with random
weights (speed does not depend on them), drawing the same number of images:

* ``generate`` (the baseline): ``gantool generate --seeds 0-N --out DIR``, PNG files through the
  render pipeline;
* ``video-frames``: ``gantool video --frames-dir DIR``, the walk's frames as PNG files through
  the same pipeline (the path math and ``generate_z`` on top);
* ``video-mp4``: ``gantool video --out walk.mp4``, frames piped to FFmpeg (libx264, crf 18);
* ``video-gif`` (only with ``--gif``): an animated GIF by Pillow, held in memory.

Each reports its own rate (frames or images per second, measured inside the command, without
interpreter start-up). The table gives medians of ``--repeats`` runs and the ratio to
``generate``: 1.0 means a frame costs what an image of ``gantool generate`` costs.

    python benchmarks/video.py --resolution 512 --frames 64          # in docs/sampling.md
    python benchmarks/video.py --resolution 64 --frames 480 --gif
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import loadavg, spread

from gantool.bench import random_checkpoint

RATE = re.compile(r"([\d,.]+) (?:frames|images)/s")


def contenders(ckpt: Path, out: Path, frames: int, gif: bool) -> dict[str, list[str]]:
    per_seed = 16
    walk = ["--seeds", f"0-{frames // per_seed - 1}", "--frames-per-seed", str(per_seed)]
    runs = {
        "generate": ["generate", ckpt, "--seeds", f"0-{frames - 1}", "--out", out / "g"],
        "video-frames": ["video", ckpt, *walk, "--frames-dir", out / "f"],
        "video-mp4": ["video", ckpt, *walk, "--out", out / "walk.mp4"],
    }
    if gif:
        runs["video-gif"] = ["video", ckpt, *walk, "--out", out / "walk.gif"]
    return {name: [sys.executable, "-m", "gantool", *map(str, args), "--batch-size", "8",
                   "--no-progress"] for name, args in runs.items()}


def measure(argv: list[str]) -> float:
    proc = subprocess.run(argv, capture_output=True, text=True)
    match = RATE.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise SystemExit(f"{argv[3]} failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return float(match[1].replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--frames", type=int, default=64, help="a multiple of 16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gif", action="store_true", help="also an animated GIF")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.frames % 16 or args.frames < 32:
        raise SystemExit("--frames: a multiple of 16, at least 32")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint(Path(tmp), args.resolution, args.ngf)
        rates: dict[str, list[float]] = {}
        for r in range(args.repeats):  # round-robin: drift in the machine's load hits all
            for name, argv in contenders(ckpt, Path(tmp) / f"run{r}", args.frames,
                                         args.gif).items():
                rates.setdefault(name, []).append(measure(argv))
                print(f"  {name} #{r + 1}: {rates[name][-1]:.2f}/s", flush=True)
    base = spread(rates["generate"])[0]
    print(f"\n{args.resolution} px, ngf {args.ngf}, {args.frames} images each, median of "
          f"{args.repeats} (load average {loadavg()})")
    print("| contender | frames or images/s, median (min-max) | vs generate |\n|---|---|---|")
    for name, values in rates.items():
        med, lo, hi = spread(values)
        print(f"| {name} | {med:.2f} ({lo:.2f}-{hi:.2f}) | {med / base:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "load_average": loadavg(),
                                               "rates": rates}, indent=1) + "\n")


if __name__ == "__main__":
    main()
