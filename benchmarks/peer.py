"""gantool's ``few-shot`` preset against lightweight-gan (lucidrains, the popular FastGAN
implementation) for the same wall-clock on the same images, scored the same way.

    python benchmarks/peer.py --data ../shared/data/twemoji-64/twemoji-64.tar --minutes 25 \
        --seeds 0,1 --out runs/peer --json benchmarks/results-peer-64.json \
        --figure docs/twemoji-64-few-shot-vs-lightweight-gan.png

Set-up once (the peer's own environment, beside gantool's; its torch and torchvision):

    python -m venv benchmarks/.peer-venv
    benchmarks/.peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 lightweight-gan==1.2.1

For each seed the contenders train side by side, each in its own process with one thread
(``OMP_NUM_THREADS=1``; lightweight-gan's data loader workers are its own), for ``--minutes``
of wall-clock, on the same folder of PNGs (``--data`` decoded by gantool's loader):

* ``few-shot``: ``gantool train --preset few-shot --max-time`` (its batch, 8).
* each ``--peer``: ``benchmarks/peer_lightweight_gan.py`` in the peer's environment, with its
  command line's defaults at the same ``--image-size`` and gantool's batch,
  ``--batch-size 8 --gradient-accumulate-every 1`` (``--peer-batch``, ``--peer-accumulate``;
  10 and 4 are its defaults). By default two: ``lightweight-gan``, its defaults (attention
  at 32 px, ``fmap_max`` 512, hinge, cutout + translation at the probability it sets itself,
  Adam 2e-4), and ``lightweight-gan-small``, sized for a CPU (``fmap_max`` 64, no attention
  layers; its discriminator's full-resolution attention head cannot be turned off).

Both are scored by ``gantool eval`` (FID and KID of ``--num`` samples against ``--num`` real
images of the same folder): gantool's checkpoint as it is, lightweight-gan's after ``gantool
import`` (which draws as the tool does, checked image for image in tests/test_import_*), on
its generator G and on its EMA generator GE (below 20,000 steps GE is a copy of G made every
1,000 steps; the better of the two is its score). Prints one table (FID, KID, steps, images
seen, wall-clock, load average) and the ratio gantool / lightweight-gan.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import loadavg  # noqa: E402

HERE = Path(__file__).resolve().parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PEERS = ("lightweight-gan", "lightweight-gan-small:fmap_max=64;attn_res_layers=[]")


def image_folder(data: str, resolution: int, folder: Path) -> Path:
    """``data`` decoded by gantool's loader as RGB PNGs in ``folder`` (once): the images both
    contenders train on and are scored against."""
    from PIL import Image

    from gantool.data.dataset import load_dataset

    if (folder / "done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    images = load_dataset(data, resolution, 3, progress=False).images  # (N, C, H, W) uint8
    for i, image in enumerate(images):
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(
            folder / f"{i:06d}.png")
    (folder / "done").write_text(f"{len(images)}\n")
    return folder


def start_gantool(args, data: Path, out: Path, seed: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gantool", "train", "--preset", "few-shot", "--data", str(data),
         "--resolution", str(args.resolution), "--device", "cpu", "--seed", str(seed),
         "--max-time", f"{args.minutes}m", "--steps", "10000000", "--out", str(out),
         "--no-progress", *sum((["--set", s] for s in args.set), [])],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ONE_THREAD})


def parse_peer(spec: str) -> tuple[str, list[str]]:
    """``LABEL[:NAME=VALUE;NAME=VALUE]`` -> (label, its settings)."""
    label, _, sets = spec.partition(":")
    return label, [s for s in sets.split(";") if s]


def start_peer(args, spec: str, data: Path, out: Path, seed: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [args.peer_python, str(HERE / "peer_lightweight_gan.py"), "--data", str(data),
         "--out", str(out), "--minutes", str(args.minutes), "--seed", str(seed),
         "--image-size", str(args.resolution), "--batch-size", str(args.peer_batch),
         "--accumulate", str(args.peer_accumulate),
         *sum((["--set", s] for s in parse_peer(spec)[1]), [])],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ONE_THREAD})


def train_together(args, data: Path, out: Path, seed: int) -> dict:
    """Every contender side by side for ``--minutes``; -> their wall-clock seconds."""
    if (out / "walls.json").is_file():
        return json.loads((out / "walls.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    logs = {name: open(out / f"{name}.log", "w") for name in
            ["few-shot", *(parse_peer(p)[0] for p in args.peer)]}
    procs = {"few-shot": start_gantool(args, data, out / "few-shot", seed, logs["few-shot"])}
    for spec in args.peer:
        label = parse_peer(spec)[0]
        procs[label] = start_peer(args, spec, data, out / label, seed, logs[label])
    walls = {}
    while len(walls) < len(procs):
        for name, proc in procs.items():
            if name not in walls and proc.poll() is not None:
                walls[name] = time.perf_counter() - t0
                if proc.returncode not in (0, 75):  # 75: gantool's time budget reached
                    raise SystemExit(f"{name} failed (exit {proc.returncode}): see "
                                     f"{out / (name + '.log')}")
        time.sleep(1)
    for log in logs.values():
        log.close()
    walls["load_average"] = loadavg()
    (out / "walls.json").write_text(json.dumps(walls) + "\n")
    return walls


def gantool(*argv) -> None:
    subprocess.run([sys.executable, "-m", "gantool", *map(str, argv)], check=True,
                   stdout=subprocess.DEVNULL)


def evaluate(model: Path, data: Path, num: int, out: Path) -> dict:
    """``gantool eval`` of ``model`` (cached in ``out``)."""
    if not out.is_file():
        gantool("eval", model, "--data", data, "--num", num, "--device", "cpu",
                "--no-progress", "--json", out)
    return json.loads(out.read_text())


def score_all(args, data: Path, out: Path) -> dict:
    """Each contender's FID, KID, steps and images seen."""
    import torch

    ours = sorted((out / "few-shot").rglob("checkpoints/last.pt"))[-1]
    step = int(torch.load(ours, map_location="cpu", weights_only=False)["step"])
    rows = {"few-shot": {**evaluate(ours, data, args.num, out / "eval-few-shot.json"),
                         "steps": step, "images_seen": step * 8}}
    for spec in args.peer:
        label = parse_peer(spec)[0]
        peer = json.loads((out / label / "peer.json").read_text())
        for net, key in (("G", "checkpoint_g"), ("GE", "checkpoint")):
            model = out / f"{label}-{net}.pt"
            if not model.is_file():
                gantool("import", peer[key], "--out", model, "--kind", "lightweight-gan")
            rows[f"{label} {net}"] = {
                **evaluate(model, data, args.num, out / f"eval-{model.stem}.json"),
                **{k: peer[k] for k in ("steps", "images_seen", "aug_prob", "g_parameters",
                                        "d_parameters")}}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=25, help="wall-clock per contender")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--num", type=int, default=1000, help="generated and real images per score")
    ap.add_argument("--set", action="append", default=[], help="passed to gantool train")
    ap.add_argument("--peer", action="append",
                    help="a lightweight-gan contender, LABEL[:NAME=VALUE;...] (its command "
                         "line's settings as Python literals); repeatable (default: its "
                         "defaults, and a CPU-sized one without attention layers)")
    ap.add_argument("--peer-python", default=str(HERE / ".peer-venv" / "bin" / "python"))
    ap.add_argument("--peer-batch", type=int, default=8)
    ap.add_argument("--peer-accumulate", type=int, default=1)
    ap.add_argument("--out", default="runs/peer")
    ap.add_argument("--json")
    ap.add_argument("--figure", help="64 samples of each (the last seed), side by side")
    args = ap.parse_args()
    args.peer = args.peer or list(PEERS)
    if not Path(args.peer_python).is_file():
        raise SystemExit(f"no peer environment at {args.peer_python}: see this script's "
                         "docstring (python -m venv benchmarks/.peer-venv ...)")
    out = Path(args.out)
    data = image_folder(args.data, args.resolution, out / f"data-{args.resolution}")
    results = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        walls = train_together(args, data, out / f"seed{seed}", seed)
        results[seed] = {"walls": walls, "rows": score_all(args, data, out / f"seed{seed}")}
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "load_average": loadavg(),
                                               "seeds": results}, indent=2) + "\n")
    if args.figure:
        make_figure(out / f"seed{seed}", Path(args.figure), args.minutes,
                    [parse_peer(p)[0] for p in args.peer])


def report(results: dict, args) -> None:
    print(f"\n{args.resolution} px, {args.minutes:g} min each, side by side (one thread each), "
          f"FID/KID of {args.num} vs {args.num} real")
    print(f"{'seed':<6}{'contender':<32}{'FID':>8}{'KID x1e3':>10}{'steps':>8}{'images':>9}"
          f"{'wall s':>8}")
    for seed, r in results.items():
        for label, row in r["rows"].items():
            wall = r["walls"].get(label.split(" ")[0], float("nan"))
            print(f"{seed:<6}{label:<32}{row['fid']:>8.1f}{row['kid'] * 1e3:>10.1f}"
                  f"{row['steps']:>8}{row['images_seen']:>9}{wall:>8.0f}")
        ours = r["rows"]["few-shot"]["fid"]
        for spec in args.peer:
            label = parse_peer(spec)[0]
            best = min(r["rows"][f"{label} G"]["fid"], r["rows"][f"{label} GE"]["fid"])
            print(f"{'':<6}{'few-shot / ' + label:<32}{ours / best:>8.2f}")
        print(f"{'':<6}load average at the end: {r['walls'].get('load_average')}")


def make_figure(run: Path, path: Path, minutes: float, labels: list[str]) -> None:
    """Seeds 0-63 of each contender's model, side by side (``quality.figure``)."""
    from quality import figure

    from gantool.backends import load_backend

    models = {"gantool few-shot": sorted((run / "few-shot").rglob("checkpoints/last.pt"))[-1],
              **{f"{label} G": run / f"{label}-G.pt" for label in labels}}
    grids = {k: load_backend("torch", str(m), device="cpu").generate(range(64), None)
             for k, m in models.items()}
    figure(grids, path, f"{minutes:g} min")
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
