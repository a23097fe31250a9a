"""Quality for your budget: FID against wall-clock minutes on this machine, preset by preset.

    python benchmarks/budget.py --data ../shared/data/twemoji-64/twemoji-64.tar --minutes 120 \
        --every 10 --out runs/budget --json benchmarks/results-budget-64.json \
        --figure docs/twemoji-64-fid-vs-time.png --grids docs/twemoji-64-budget-grids.png

Each contender trains alone with every core, in segments of ``--every`` minutes, mark by
mark (every contender to 10 min, then every one to 20, ...): a gantool preset by ``gantool
train --max-time``, then ``--resume --max-time`` (a resume goes on exactly where the run
stopped); the canonical pytorch/examples DCGAN by its loop (``quality.train_canonical``'s)
with its networks and optimisers kept with each segment's checkpoint.
After each segment the checkpoint is kept as ``OUT/NAME/at-MMMmin.pt``, and its seconds and
the load average at its end in ``OUT/NAME/segments.jsonl`` (a segment that trained beside other
work is no fair mark: delete its checkpoint and the later ones, and rerun). A rerun goes on from
the last whole segment, so the runs outlive an interrupted session (hours of them); an empty
file ``OUT/STOP`` stops the script between two segments.

Then every kept checkpoint is scored (FID of ``--num`` samples against ``--num`` real images,
gantool's Inception features, cached in ``OUT/NAME/fid-NUM.json``), and the script prints FID
per contender per minute mark and which contender is best at each, and draws FID against
minutes (``--figure``) and the samples (seeds 0-35) at ``--grid-minutes`` side by side
(``--grids``). ``--train-only`` and ``--score-only`` split the two; a contender left out of
``--contenders`` for a while is scored later as far as it got. A contender with no checkpoint
in OUT (a run on another machine, whose OUT is gone) keeps the line an earlier run recorded in
``--json`` (same resolution, ``--num`` and seed): a line is always one run's.

Contenders (``--contenders``): ``canonical`` (width ``--width``, batch 64, as the example) and
gantool presets at their own settings, ``LABEL=PRESET:key=value;key=value`` for variants.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import canonical_dcgan  # noqa: E402
from harness import loadavg  # noqa: E402
from quality import NZ, CanonicalGenerator, gantool_generator, parse_contender  # noqa: E402

from gantool.data.dataset import load_dataset  # noqa: E402
from gantool.metrics.evaluate import score_generator  # noqa: E402
from gantool.train.run_files import LAST, step_checkpoints, step_name, step_of  # noqa: E402


def kept(folder: Path) -> dict[int, Path]:
    """Minute mark -> checkpoint kept after that segment."""
    return {int(p.stem[3:-3]): p for p in folder.glob("at-*min.pt")}


def train_gantool(spec: str, args, folder: Path, minutes: int) -> None:
    """One segment of ``--every`` minutes: a new run, or a resume of the one in ``folder``."""
    _, preset, sets = parse_contender(spec)
    runs = sorted(folder.glob("0*-*/checkpoints/last.pt"))
    common = ["--max-time", f"{args.every}m", "--no-progress"]
    if runs:
        rewind(runs[-1].parents[1], folder)
        cmd = ["train", "--resume", str(runs[-1].parents[1]), *common]
    else:
        cmd = ["train", "--preset", preset, "--data", args.data, "--resolution",
               str(args.resolution), "--device", "cpu", "--seed", str(args.seed),
               "--steps", "100000000", "--out", str(folder), *common,
               *sum((["--set", s] for s in sets), [])]
    with open(folder / "train.log", "a") as log:
        code = subprocess.run([sys.executable, "-m", "gantool", *cmd], stdout=log,
                              stderr=subprocess.STDOUT).returncode
    if code not in (0, 75):  # 75: the time budget reached, with a checkpoint
        raise SystemExit(f"{spec}: gantool train exited with {code}: see {folder / 'train.log'}")
    last = sorted(folder.glob("0*-*/checkpoints/last.pt"))[-1]
    path = folder / f"at-{minutes:03d}min.pt"
    shutil.copyfile(last, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def rewind(run: Path, folder: Path) -> None:
    """A segment cut short (a killed session) trained past the newest kept checkpoint: put the
    run back there, so every segment starts where the last whole one ended."""
    marks = kept(folder)
    if not marks:
        return
    newest = marks[max(marks)]
    step, ckpts = steps_at(newest), run / "checkpoints"
    if steps_at(ckpts / LAST) == step:
        return
    for path in step_checkpoints(ckpts):
        if step_of(path) > step:
            path.unlink()
    shutil.copyfile(newest, ckpts / step_name(step))
    shutil.copyfile(newest, ckpts / LAST)
    print(f"{folder.name}: an unfinished segment was dropped; back to {newest.name}", flush=True)


def train_canonical_segment(args, folder: Path, minutes: int) -> None:
    """The example's loop for ``--every`` minutes from the state the newest kept checkpoint
    holds (networks, optimisers, step, random state)."""
    data = torch.from_numpy(load_dataset(args.data, args.resolution, 3, progress=False).images)
    netG, netD, optG, optD = canonical_dcgan.build_all(NZ, args.width, args.width, 3,
                                                      args.resolution)
    step, marks = 0, kept(folder)
    if marks:
        state = torch.load(marks[max(marks)], weights_only=False)
        for obj, key in ((netG, "G"), (netD, "D"), (optG, "optG"), (optD, "optD")):
            obj.load_state_dict(state[key])
        step = state["step"]
        torch.set_rng_state(state["rng"])
    else:
        torch.manual_seed(args.seed)
    deadline = time.perf_counter() + args.every * 60
    perm, pos = torch.randperm(len(data)), 0
    while time.perf_counter() < deadline:
        if pos + 64 > len(data):
            perm, pos = torch.randperm(len(data)), 0
        real = data[perm[pos : pos + 64]].float().div_(127.5).sub_(1.0)
        pos += 64
        canonical_dcgan.canonical_step(netG, netD, optG, optD, real, NZ)
        step += 1
    path = folder / f"at-{minutes:03d}min.pt"
    torch.save({"G": netG.state_dict(), "D": netD.state_dict(), "optG": optG.state_dict(),
                "optD": optD.state_dict(), "step": step, "rng": torch.get_rng_state()},
               path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def train_all(specs: dict[str, str], args, out: Path) -> None:
    """Mark by mark, every contender in turn, so a run cut off after any mark already compares
    them all up to it. ``OUT/STOP`` (an empty file) stops it between two segments."""
    for minutes in range(args.every, args.minutes + 1, args.every):
        for name, spec in specs.items():
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            if minutes in kept(folder):
                continue
            if (out / "STOP").exists():
                (out / "STOP").unlink()
                raise SystemExit(f"stopped before {name}'s {minutes} min, as {out / 'STOP'} "
                                 "asked; run the same command again to go on")
            t0 = time.perf_counter()
            if name == "canonical":
                subprocess.run([sys.executable, __file__, *sys.argv[1:], "--canonical-segment",
                                str(folder), str(minutes)], check=True)
            else:
                train_gantool(spec, args, folder, minutes)
            seconds, load = round(time.perf_counter() - t0), round(os.getloadavg()[0], 2)
            with open(folder / "segments.jsonl", "a") as f:
                f.write(json.dumps({"minutes": minutes, "seconds": seconds, "load": load}) + "\n")
            print(f"{name}: {minutes} min kept ({seconds} s, load average {load:.2f})",
                  flush=True)


def generator(name: str, path: Path, args):
    return CanonicalGenerator(path, args) if name == "canonical" else \
        gantool_generator(path, "ema-eval")


def score_all(specs: dict[str, str], args, out: Path,
              earlier: dict[str, dict]) -> dict[str, dict[int, float]]:
    real, table = None, {}
    for name in specs:
        if name in earlier:
            table[name] = earlier[name]["fid"]
            print(f"  {name}: no checkpoint in {out}; the line recorded in {args.json}", flush=True)
            continue
        cache = out / name / f"fid-{args.num}.json"
        table[name] = {int(k): v for k, v in (json.loads(cache.read_text()).items()
                                               if cache.is_file() else [])}
        for minutes, path in sorted(kept(out / name).items()):
            if minutes not in table[name]:
                if real is None:
                    real = load_dataset(args.data, args.resolution, 3, progress=False).images
                table[name][minutes] = score_generator(generator(name, path, args), real,
                                                       ["fid"], args.num, batch_size=64)["fid"]
                print(f"  {name} at {minutes} min: FID {table[name][minutes]:.1f}", flush=True)
                cache.write_text(json.dumps(table[name]))
    return table


def earlier_lines(specs, args, out: Path) -> dict[str, dict]:
    """Contender -> its ``fid``, ``steps`` and ``training_load_average`` from ``--json``, for
    the contenders with no checkpoint in ``out``, where that record is of the same resolution,
    ``--num`` and seed."""
    path = Path(args.json) if args.json else None
    if not path or not path.is_file():
        return {}
    record = json.loads(path.read_text())
    if any(record["args"].get(k) != getattr(args, k) for k in ("resolution", "num", "seed")):
        return {}
    keys = ("fid", "steps", "training_load_average")
    return {name: {k: {int(m): v for m, v in record[k].get(name, {}).items()} for k in keys}
            for name in specs if not kept(out / name) and name in record["fid"]}


def segment_loads(folder: Path) -> dict[int, float]:
    """Kept minute mark -> load average at the end of the segment that trained to it (a
    segment rerun after its checkpoint was deleted: the rerun's)."""
    path, marks = folder / "segments.jsonl", kept(folder)
    rows = map(json.loads, path.read_text().splitlines()) if path.is_file() else []
    return {r["minutes"]: r["load"] for r in rows if r["minutes"] in marks}


def steps_at(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def report(table: dict[str, dict[int, float]], steps, loads, args) -> dict:
    marks = sorted({m for row in table.values() for m in row})
    print(f"\n{args.resolution} px, FID of {args.num} vs {args.num} real, by minutes of training "
          f"alone on this machine; load average {loadavg()}")
    print(f"{'minutes':<16}" + "".join(f"{m:>13}" for m in marks))
    for name, row in table.items():
        print(f"{name:<16}" + "".join(f"{row.get(m, float('nan')):>13.1f}" for m in marks))
        print(f"{'  steps':<16}" + "".join(f"{steps[name].get(m, ''):>13}" for m in marks))
    ends = [v for name in table for v in loads[name].values()]
    if ends:
        print(f"load average at the end of each training segment: {min(ends):.2f}-"
              f"{max(ends):.2f}")
    best = {m: min((row[m], name) for name, row in table.items() if m in row)[1] for m in marks}
    print(f"{'best':<16}" + "".join(f"{best[m]:>13.12}" for m in marks))
    return best


def draw_figure(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, row in table.items():
        marks = sorted(row)
        ax.plot(marks, [row[m] for m in marks], marker="o", label=name)
    ax.set_xlabel("minutes of training on this machine")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("FID (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"figure: {path}")


def grid_cells(specs, args, out: Path, marks: list[int], folder: Path) -> dict:
    """(contender, minutes) -> its cell, seeds 0-35 (6 x 6), each also kept as
    ``folder/NAME-MMMmin.png``: a contender with no checkpoint in ``out`` (its run was on
    another machine) keeps the cells its run left there."""
    from PIL import Image

    from gantool.sampling.images import make_grid

    folder.mkdir(parents=True, exist_ok=True)
    cells = {}
    for name in specs:
        paths = kept(out / name)
        if paths:  # this run's row: drop the cells of an earlier run of this contender
            for old in folder.glob(f"{name}-*min.png"):
                if old.stem[len(name) + 1:-3].isdigit():  # not another contender's, few-shot-x
                    old.unlink()
        for m in marks:
            cell = folder / f"{name}-{m:03d}min.png"
            if m in paths:
                image = make_grid(generator(name, paths[m], args).generate(range(36), None), 6)
                Image.fromarray(image).quantize(256, method=Image.Quantize.MEDIANCUT).save(
                    cell, optimize=True)
            if cell.is_file():
                cells[name, m] = Image.open(cell).convert("RGB")
    return cells


def draw_grids(specs, args, out: Path, path: Path) -> None:
    """Rows: contenders; columns: ``--grid-minutes``; the cells kept beside the sheet, in
    ``PATH-without-suffix/``."""
    from PIL import Image, ImageDraw

    marks, folder = [int(m) for m in args.grid_minutes.split(",")], path.with_suffix("")
    cells = grid_cells(specs, args, out, marks, folder)
    if not cells:
        return
    w, h = next(iter(cells.values())).size
    left, top = 90, 18
    sheet = Image.new("RGB", (left + len(marks) * (w + 8), top + len(specs) * (h + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, m in enumerate(marks):
        draw.text((left + j * (w + 8) + 2, 3), f"{m} min", fill="black")
    for i, name in enumerate(specs):
        draw.text((3, top + i * (h + 8) + h // 2), name, fill="black")
        for j, m in enumerate(marks):
            if (name, m) in cells:
                sheet.paste(cells[name, m], (left + j * (w + 8), top + i * (h + 8)))
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"grids: {path} (cells in {folder})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--contenders", default="canonical,colour-small,few-shot",
                    help="canonical and gantool presets (LABEL=PRESET:key=value;...), "
                         "comma-separated")
    ap.add_argument("--width", type=int, default=64, help="the canonical DCGAN's ngf = ndf")
    ap.add_argument("--minutes", type=int, default=120)
    ap.add_argument("--every", type=int, default=10, help="minutes between kept checkpoints")
    ap.add_argument("--num", type=int, default=1000, help="generated and real images per FID")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/budget")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--score-only", action="store_true",
                    help="score what is kept, however far each contender got; train nothing")
    ap.add_argument("--json")
    ap.add_argument("--figure")
    ap.add_argument("--grids")
    ap.add_argument("--grid-minutes", default="10,30,60,120")
    ap.add_argument("--canonical-segment", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.canonical_segment:
        return train_canonical_segment(args, Path(args.canonical_segment[0]),
                                       int(args.canonical_segment[1]))
    specs = {parse_contender(s)[0]: s for s in args.contenders.split(",") if s}
    out = Path(args.out)
    if not args.score_only:
        train_all(specs, args, out)
    if args.train_only:
        return
    earlier = earlier_lines(specs, args, out)
    table = score_all(specs, args, out, earlier)
    steps = {name: earlier[name]["steps"] if name in earlier else
             {m: steps_at(p) for m, p in kept(out / name).items()} for name in specs}
    loads = {name: earlier[name]["training_load_average"] if name in earlier else
             segment_loads(out / name) for name in specs}
    best = report(table, steps, loads, args)
    if args.json:
        def by_mark(rows):
            return {k: {str(m): v for m, v in sorted(row.items())} for k, row in rows.items()}

        Path(args.json).write_text(json.dumps({
            "args": {k: v for k, v in vars(args).items() if k != "canonical_segment"},
            "load_average": loadavg(),
            "training_load_average": by_mark(loads), "fid": by_mark(table),
            "steps": by_mark(steps), "best": {str(m): n for m, n in best.items()}},
            indent=2) + "\n")
    if args.figure:
        draw_figure(table, Path(args.figure))
    if args.grids:
        draw_grids(specs, args, out, Path(args.grids))


if __name__ == "__main__":
    main()
