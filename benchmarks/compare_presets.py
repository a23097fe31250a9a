"""Train several presets on the same data for the same number of steps and put their samples
side by side: one `gantool train` process per preset, run one after another (never at once:
two torch jobs on a small machine slow each other several-fold).

    python benchmarks/compare_presets.py --presets xin-anime96-baseline,xin-anime96 \
        --data ../shared/data/twemoji-64/twemoji-64.tar --resolution 64 --steps 300 \
        --out runs/compare --figure docs/twemoji-xin-vs-baseline.png

Prints a table (batch, images seen, wall time, images/s, the last logged D(x), D(G(z)) and
fake/real batch spread, rollbacks) and writes a figure: for each preset its sample grids at
every `--sample-every` steps, one row per preset, same seeds everywhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

LABEL_H = 18


def train(preset: str, args: argparse.Namespace) -> dict:
    """One preset, one fresh process; returns the run's summary."""
    out = Path(args.out) / preset
    cmd = [sys.executable, "-m", "gantool", "train", "--preset", preset, "--data", args.data,
           "--steps", str(args.steps), "--out", str(out), "--no-progress",
           "--sample-every", str(args.sample_every), "--checkpoint-every", str(args.steps),
           "--set", "train.sample_grid=64", *sum((["--set", s] for s in args.set), [])]
    if args.resolution:
        cmd += ["--resolution", str(args.resolution)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    run_dir = max(out.iterdir())
    cfg = json.loads((run_dir / "config.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in rows if "event" not in r]
    batch = cfg["train"]["batch_size"]
    rates = sorted(r["images_per_s"] for r in (logs[1:] or logs))  # the first has warm-up
    return {"preset": preset, "run_dir": run_dir, "batch": batch,
            "images": batch * args.steps, "wall_s": wall, "median_images_per_s":
            rates[len(rates) // 2], "d_real": logs[-1]["d_real"], "d_fake": logs[-1]["d_fake"],
            "spread": logs[-1]["spread"],
            "rollbacks": sum(r.get("event") == "rollback" for r in rows)}


def figure(results: list[dict], path: Path) -> None:
    """Rows of sample grids (one per preset) with the step above each grid."""
    grids = [sorted((r["run_dir"] / "samples").glob("step-*.png")) for r in results]
    first = Image.open(grids[0][0])
    w, h = first.size
    cols = max(len(g) for g in grids)
    sheet = Image.new("RGB", (cols * (w + 8), len(grids) * (h + 2 * LABEL_H)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (r, files) in enumerate(zip(results, grids)):
        y = i * (h + 2 * LABEL_H)
        draw.text((4, y + 2), f"{r['preset']} (batch {r['batch']})", fill="black")
        for j, f in enumerate(files):
            x = j * (w + 8)
            draw.text((x + 4, y + LABEL_H + 2), f"step {int(f.stem.split('-')[1])}", fill="black")
            sheet.paste(Image.open(f).convert("RGB"), (x, y + 2 * LABEL_H))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)  # ~4x smaller


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", required=True, help="comma-separated preset names")
    ap.add_argument("--data", required=True)
    ap.add_argument("--resolution", type=int, default=0, help="0: each preset's own")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--sample-every", type=int, default=100)
    ap.add_argument("--set", action="append", default=[], help="passed to every run")
    ap.add_argument("--out", default="runs/compare")
    ap.add_argument("--figure", default="compare.png")
    ap.add_argument("--json", help="also write the table as JSON")
    args = ap.parse_args()
    results = [train(p.strip(), args) for p in args.presets.split(",")]
    print(f"\n{'preset':<22}{'batch':>6}{'images':>9}{'wall s':>8}{'img/s':>7}"
          f"{'D(x)':>7}{'D(G(z))':>9}{'spread':>8}{'rollbacks':>10}")
    for r in results:
        print(f"{r['preset']:<22}{r['batch']:>6}{r['images']:>9,}{r['wall_s']:>8.0f}"
              f"{r['median_images_per_s']:>7.1f}{r['d_real']:>7.2f}{r['d_fake']:>9.2f}"
              f"{r['spread']:>8.2f}{r['rollbacks']:>10}")
    figure(results, Path(args.figure))
    print(f"figure: {args.figure}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**r, "run_dir": str(r["run_dir"])} for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
