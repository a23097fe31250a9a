"""A render on a local Ray cluster against the single-process render, on the same cores.

    python benchmarks/cluster.py --resolution 256 --images 3000 --repeats 3 --json out.json

A generator with random weights (``--preset``'s arch at ``--resolution``; speed does not depend
on the weights) is saved as a checkpoint, and each contender is the real command in its own
process, into a fresh folder, timed from start to exit (Ray's start and the merge included):

* ``single``: ``gantool generate CKPT --seeds 0-N --out DIR`` (one process: the backend's
  threads and one encoder worker per core);
* ``ray``: the same with ``--engine ray`` (a Ray started on this machine, one actor per CPU
  slot, four shards per actor, then the merge).

Contenders alternate over ``--repeats``; the table gives median images/s and the median of the
per-repeat ratios ray / single.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import loadavg, random_checkpoint, spread

CONTENDERS = {"single": [], "ray": ["--engine", "ray"]}


def run(ckpt: Path, images: int, out: Path, extra: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gantool", "generate", str(ckpt), "--seeds",
                           f"0-{images - 1}", "--out", str(out), "--no-progress", *extra],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(extra) or 'single'} failed: {proc.stderr[-2000:]}")
    return images / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--preset", default="few-shot")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    start = loadavg()
    print(f"load average {start}; {args.images} images at {args.resolution} px, "
          f"{args.repeats} repeats, contenders alternate")
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, _ = random_checkpoint(Path(tmp) / "ckpt", args.resolution, args.ngf, args.preset)
        for rep in range(args.repeats):
            names = list(CONTENDERS) if rep % 2 == 0 else list(CONTENDERS)[::-1]
            for name in names:
                out = Path(tmp) / f"{name}-{rep}"
                rates[name].append(run(ckpt, args.images, out, CONTENDERS[name]))
                shutil.rmtree(out)
                print(f"  repeat {rep}: {name} {rates[name][-1]:,.1f} images/s")
    ratio = spread([r / s for r, s in zip(rates["ray"], rates["single"])])
    result = {"load_average_start": start, "args": vars(args),
              "images_per_s": {k: spread(v)[0] for k, v in rates.items()},
              "runs": rates, "ray_vs_single": ratio[0], "load_average_end": loadavg()}
    for name in CONTENDERS:
        med, lo, hi = spread(rates[name])
        print(f"{name:>7}: {med:,.1f} images/s (min {lo:,.1f}, max {hi:,.1f})")
    print(f"ray / single: {ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f}); load average "
          f"{loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
