"""gantool explore on these cores: time to the first grid and per-image latency, torch against
ONNX Runtime, on the same generator.

    python benchmarks/explore.py                          # few-shot at 64, 256 and 1024 px
    python benchmarks/explore.py --cases 64 --repeats 3 --json out.json

For each resolution a generator with random weights (speed does not depend on them; the
``--preset`` arch at that resolution) is saved as a checkpoint and exported to ONNX. Each
contender is a real ``gantool explore MODEL --backend B --port 0`` server in its own process,
asked over HTTP what the page asks, in the page's order:

* **first grid**: seconds from starting the command to having the page's first grid (the
  ``/api/grid`` answer and every image of it fetched): what a person waits for after typing it;
* **ready**: seconds until the server printed its address (imports, the model loaded);
* **image**: milliseconds for one new seed (``/api/image.png``, not cached), median of
  ``--images`` requests: what a click on a seed outside the page costs;
* **grid ms/image**: the model's milliseconds per image within the grid's batch, as the server
  measured them (the figure the page shows).

Contenders alternate over ``--repeats``; the table gives medians, and onnx's ratio to torch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from generate import make_models
from harness import loadavg

CONTENDERS = ("torch", "onnx")
GRID = 24  # the page's grid (fewer where the request bound allows fewer)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as r:
        return r.read()


def measure(model: Path, backend: str, start: int, images: int) -> dict:
    """One server's life: start it, draw the first grid, then single new seeds; stop it."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "explore", str(model), "--backend",
                             backend, "--device", "cpu", "--port", "0"],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = ""
        while "http://" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise SystemExit(f"explore failed to start: {proc.stderr.read()}")
        ready = time.perf_counter() - t0
        url = line.split("gantool explore: ")[1].split()[0]
        count = min(GRID, json.loads(get(url + "api/info"))["max_grid"])
        page = json.loads(get(f"{url}api/grid?start={start}&count={count}"))
        for seed in page["seeds"]:
            get(f"{url}api/image.png?seed={seed}")
        first = time.perf_counter() - t0
        single = []
        for seed in range(start + count, start + count + images):
            t = time.perf_counter()
            get(f"{url}api/image.png?seed={seed}")
            single.append(1000 * (time.perf_counter() - t))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    return {"ready_s": ready, "first_grid_s": first, "grid": count,
            "image_ms": statistics.median(single), "grid_ms_per_image": page["ms_per_image"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="64,256,1024", help="resolutions, comma-separated")
    ap.add_argument("--preset", default="few-shot", help="the generator's arch and widths")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=5, help="single-seed requests per server")
    ap.add_argument("--json")
    args = ap.parse_args()

    results = {"load_average_start": loadavg(), "preset": args.preset, "cases": {}}
    print(f"load average {loadavg()}; {args.repeats} repeats, contenders alternate")
    print(f"{'px':>5} {'backend':>8} {'ready s':>8} {'first grid s':>13} {'grid':>5} "
          f"{'image ms':>9} {'grid ms/img':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for res in (int(r) for r in args.cases.split(",")):
            ckpt, onnx, _ = make_models(res, Path(tmp), 64, args.preset)
            runs = {b: [] for b in CONTENDERS}
            for rep in range(args.repeats):
                for backend in CONTENDERS if rep % 2 == 0 else CONTENDERS[::-1]:
                    model = onnx if backend == "onnx" else ckpt
                    runs[backend].append(measure(model, backend, 1000 * (rep + 1), args.images))
            case = {}
            for backend, rows in runs.items():
                case[backend] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                m = case[backend]
                print(f"{res:>5} {backend:>8} {m['ready_s']:>8.2f} {m['first_grid_s']:>13.2f} "
                      f"{m['grid']:>5.0f} {m['image_ms']:>9.1f} {m['grid_ms_per_image']:>12.1f}")
            case["onnx_vs_torch"] = {k: case["onnx"][k] / case["torch"][k]
                                     for k in ("first_grid_s", "image_ms", "grid_ms_per_image")}
            print(f"{res:>5} {'ratio':>8} onnx/torch: first grid "
                  f"{case['onnx_vs_torch']['first_grid_s']:.2f}x, image "
                  f"{case['onnx_vs_torch']['image_ms']:.2f}x")
            results["cases"][str(res)] = {**case, "runs": runs}
    results["load_average_end"] = loadavg()
    print(f"load average at the end {loadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
