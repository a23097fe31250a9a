"""Image quality at equal budget: gantool presets against the canonical pytorch/examples DCGAN,
by FID along the run.

    python benchmarks/quality.py --data ../shared/data/twemoji-64/twemoji-64.tar \
        --resolution 64 --width 32 --batch 64 --steps 3000 --checkpoints 6 \
        --presets colour-small --out runs/quality --json benchmarks/results-quality-64.json

Every contender trains in its own process, one after another, on the same images (decoded by
gantool's loader) with the same steps, batch and widths (ngf = ndf = ``--width``):

* ``canonical``: ``benchmarks/canonical_dcgan.py`` (the example's networks, init, BCE, Adam 2e-4
  b1 0.5, one D and one G update per step), data reshuffled every epoch. Sampled the way the
  example samples: ``netG(noise)`` with the network in training mode, so BatchNorm normalises
  with the statistics of the batch being drawn (batches of 64).
* each ``--presets`` name: ``gantool train --preset NAME`` with ``model.ngf/ndf``,
  ``--batch-size`` and ``--steps`` set as above. Sampled the way gantool samples: the
  checkpoint's generator through the product's torch backend (EMA weights in eval mode).

Each checkpoint is scored the same way: FID of ``--num`` samples (seeds 0..num-1 through the
latent contract) against ``--num`` real images (a fixed subset), with gantool's Inception
features and the same cached real statistics for everyone. ``--variants`` also scores other
ways of drawing from a gantool checkpoint, at the last checkpoint (diagnosis: which weights,
which BatchNorm statistics).

Prints one table, FID per checkpoint per contender and the ratio to ``canonical``; writes
``--json`` and, with ``--figure``, the final sample grids side by side.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import canonical_dcgan  # noqa: E402

from gantool.data.dataset import load_dataset  # noqa: E402
from gantool.latent import latents  # noqa: E402
from gantool.metrics.evaluate import score_generator  # noqa: E402
from gantool.sampling.images import to_uint8_tensor  # noqa: E402
from gantool.train.run_files import step_of  # noqa: E402

NZ = 100


# ---- the canonical side ------------------------------------------------------------------
def train_canonical(args: argparse.Namespace, out: Path) -> None:
    """The example's loop on gantool's decoded images; G's state at every checkpoint step."""
    torch.manual_seed(args.seed)
    data = torch.from_numpy(load_dataset(args.data, args.resolution, 3, progress=False).images)
    netG, netD, optG, optD = canonical_dcgan.build_all(NZ, args.width, args.width, 3,
                                                      args.resolution)
    every = args.steps // args.checkpoints
    out.mkdir(parents=True, exist_ok=True)
    perm, pos = torch.randperm(len(data)), 0
    for step in range(1, args.steps + 1):
        if pos + args.batch > len(data):
            perm, pos = torch.randperm(len(data)), 0
        real = data[perm[pos : pos + args.batch]].float().div_(127.5).sub_(1.0)
        pos += args.batch
        canonical_dcgan.canonical_step(netG, netD, optG, optD, real, NZ)
        if step % every == 0:
            torch.save({"G": netG.state_dict(), "step": step}, out / f"step-{step:07d}.pt")


class CanonicalGenerator:
    """A canonical checkpoint as a gantool Generator: z by the latent contract, the network in
    training mode (batch statistics), as the example draws its samples."""

    def __init__(self, path: Path, args: argparse.Namespace):
        self.net = canonical_dcgan.Generator(NZ, args.width, 3, args.resolution)
        self.net.load_state_dict(torch.load(path, weights_only=True)["G"])
        self.net.train()

    @torch.no_grad()
    def generate(self, seeds, truncation) -> np.ndarray:
        z = torch.from_numpy(latents(list(seeds), NZ, "normal", truncation))
        return to_uint8_tensor(self.net(z[:, :, None, None])).numpy()


# ---- the gantool side --------------------------------------------------------------------
def parse_contender(spec: str) -> tuple[str, str, list[str]]:
    """``LABEL=PRESET[:key=value;key=value]`` or ``PRESET`` -> (label, preset, overrides)."""
    label, _, rest = spec.partition("=") if "=" in spec.split(":")[0] else (spec, "", spec)
    preset, _, sets = rest.partition(":")
    return label, preset, [s for s in sets.split(";") if s]


def contender_config(spec: str, args: argparse.Namespace):
    """The RunConfig a gantool contender trains with (widths ``--width`` unless it sets its own)."""
    from gantool.config import apply_overrides, parse_set_options, preset_config

    _, preset, sets = parse_contender(spec)
    widths = [f"model.ngf={args.width}", f"model.ndf={args.width}"]
    return apply_overrides(preset_config(preset), {
        "model.resolution": args.resolution, "train.device": "cpu",
        **parse_set_options([*widths, *args.set, *sets])})


def budget(spec: str, args: argparse.Namespace) -> tuple[int, int]:
    """(batch, steps) of a contender: ``--batch`` x ``--steps``; with ``--own-batch`` a gantool
    preset's own batch size and as many steps as give the same number of images seen; with
    ``--equal-time`` its own batch and as many steps as fit in the time the baseline takes for
    ``--steps`` (by the step times ``step_times`` measured)."""
    if spec == "canonical" or not (args.own_batch or args.equal_time):
        return args.batch, args.steps
    batch = contender_config(spec, args).train.batch_size
    if args.equal_time:
        times = step_times(args)
        ratio = times[parse_contender(args.baseline)[0]] / times[parse_contender(spec)[0]]
        every = int(args.steps * ratio / args.checkpoints)
    else:
        every = round(args.steps * args.batch / args.checkpoints / batch)
    return batch, every * args.checkpoints


def time_steps(spec: str, args: argparse.Namespace, repeats: int = 5, steps: int = 4) -> float:
    """Median seconds of one training step of a contender, in this process: the canonical
    example's step, or gantool's whole update (both nets, every phase) at its own batch."""
    torch.manual_seed(0)
    if spec == "canonical":
        nets = canonical_dcgan.build_all(NZ, args.width, args.width, 3, args.resolution)
        real = torch.rand(args.batch, 3, args.resolution, args.resolution) * 2 - 1

        def step(s: int) -> None:
            canonical_dcgan.canonical_step(*nets, real, NZ)
    else:
        from gantool.train import distributed
        from gantool.train.hardware import setup_hardware
        from gantool.train.update import GanUpdate

        cfg = contender_config(spec, args)
        world = distributed.World()
        update = GanUpdate(cfg, setup_hardware(cfg.train, world), world)
        real = torch.rand(cfg.train.batch_size, 3, args.resolution, args.resolution) * 2 - 1

        def step(s: int) -> None:
            update.step(real, s, 1.0)
    step(0)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for s in range(steps):
            step(1 + r * steps + s)
        times.append((time.perf_counter() - t0) / steps)
    return float(np.median(times))


def step_times(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per step of every contender, each timed in its own process, one after another
    (cached in OUT/step-times.json: the budget of a rerun stays the same; a contender added
    later is timed alone, so time it on a quiet machine)."""
    cache = Path(args.out) / "step-times.json"
    times = json.loads(cache.read_text()) if cache.is_file() else {}
    missing = [s for s in contender_specs(args).values() if parse_contender(s)[0] not in times]
    for spec in missing:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--time-step", spec],
                             check=True, capture_output=True, text=True).stdout
        times[parse_contender(spec)[0]] = float(out.split()[-1])
        print(f"{parse_contender(spec)[0]}: {times[parse_contender(spec)[0]]:.3f} s/step "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    if missing:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(times, indent=2) + "\n")
    return times


def contender_specs(args: argparse.Namespace) -> dict[str, str]:
    """label -> contender spec, the baseline first."""
    names = [p.strip() for p in args.presets.split(",") if p.strip()] + args.contender
    return {parse_contender(p)[0]: p for p in [args.baseline, *names]}


def train_gantool(spec: str, args: argparse.Namespace, out: Path) -> None:
    batch, steps = budget(spec, args)
    every = steps // args.checkpoints
    _, preset, sets = parse_contender(spec)
    cmd = [sys.executable, "-m", "gantool", "train", "--preset", preset, "--data", args.data,
           "--resolution", str(args.resolution), "--batch-size", str(batch),
           "--device", "cpu",
           "--steps", str(steps), "--checkpoint-every", str(every),
           "--sample-every", str(every), "--seed", str(args.seed), "--out", str(out),
           "--no-progress", "--set", f"model.ngf={args.width}", "--set",
           f"model.ndf={args.width}", "--set", f"train.keep={args.checkpoints + 1}",
           *sum((["--set", s] for s in [*args.set, *sets]), [])]
    subprocess.run(cmd, check=True)


class VariantGenerator:
    """A gantool checkpoint drawn another way (``--variants``), for diagnosis:

    * ``g-eval`` / ``g-train``: the raw (non-EMA) G with running / batch BatchNorm statistics;
    * ``ema-train``: the EMA weights with batch statistics;
    * ``ema-recal``: the EMA weights with BatchNorm running statistics recomputed for them
      (over 20 batches of fresh z), then eval mode;
    * ``ema-copied``: the EMA weights with G's running statistics (what G_ema carried before
      standing statistics), eval mode.
    """

    def __init__(self, path: Path, variant: str):
        from gantool.models.checkpoint import load_generator

        self.net, m, _, _ = load_generator(path, ema=variant.startswith("ema"))
        self.nz, self.prior = m.nz, m.prior
        if variant.endswith("train"):
            self.net.train()
        elif variant == "ema-recal":
            recalibrate_batchnorm(self.net, self.nz, self.prior)
        elif variant == "ema-copied":
            for mine, g in zip(self.net.buffers(), load_generator(path, ema=False)[0].buffers()):
                mine.copy_(g)

    @torch.no_grad()
    def generate(self, seeds, truncation) -> np.ndarray:
        z = torch.from_numpy(latents(list(seeds), self.nz, self.prior, truncation))
        return to_uint8_tensor(self.net(z)).numpy()


@torch.no_grad()
def recalibrate_batchnorm(net: torch.nn.Module, nz: int, prior: str, batches: int = 20,
                          batch: int = 64) -> None:
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches
    net.train()
    for i in range(batches):
        seeds = range(10**6 + i * batch, 10**6 + (i + 1) * batch)
        net(torch.from_numpy(latents(list(seeds), nz, prior, None)))
    net.eval()


def gantool_generator(path: Path, variant: str):
    if variant == "ema-eval":  # the product's own path
        from gantool.backends.torch_backend import TorchGenerator

        return TorchGenerator(str(path), device="cpu")
    return VariantGenerator(path, variant)


# ---- scoring -----------------------------------------------------------------------------
def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, file) of every step checkpoint under ``folder`` (either side's), oldest first."""
    return sorted((step_of(p), p) for p in folder.rglob("step-*.pt"))


def score(name: str, gen, real: np.ndarray, args: argparse.Namespace) -> float:
    t0 = time.perf_counter()
    value = score_generator(gen, real, ["fid"], args.num, batch_size=64)["fid"]
    print(f"  {name}: FID {value:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return value


def train_all(specs: dict[str, str], args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Train every contender in turn (each in its own process); wall seconds per contender."""
    walls = {}
    for name in specs:
        folder = out / name
        if args.reuse and folder.exists():
            continue
        t0 = time.perf_counter()
        if name == "canonical":
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--train-canonical",
                            str(folder)], check=True)
        else:
            train_gantool(specs[name], args, folder)
        walls[name] = time.perf_counter() - t0
        print(f"{name}: trained in {walls[name]:.0f} s", flush=True)
    return walls


def score_all(specs: dict[str, str], args: argparse.Namespace,
              out: Path) -> tuple[dict[str, dict[int, float]], dict]:
    """FID of every checkpoint of every contender (and ``--variants``), cached beside the runs;
    the table and each row's last generator."""
    real = load_dataset(args.data, args.resolution, 3, progress=False).images
    variants = [v.strip() for v in args.variants.split(",")]
    table: dict[str, dict[int, float]] = {}
    finals = {}
    for name in specs:
        batch = budget(specs[name], args)[0]
        for kind in ["canonical"] if name == "canonical" else variants:
            label = name if kind in ("canonical", "ema-eval") else f"{name} [{kind}]"
            cache = out / name / f"fid-{kind}-{args.num}.json"  # scores survive a rerun
            table[label] = {int(k): v for k, v in (json.loads(cache.read_text()).items()
                                                    if cache.is_file() else [])}
            found = checkpoints(out / name)
            for step, path in found:
                if (args.last_only or kind not in ("canonical", "ema-eval")) \
                        and step != found[-1][0]:
                    continue  # other ways of drawing (and sweeps): the last checkpoint only
                gen = (CanonicalGenerator(path, args) if name == "canonical"
                       else gantool_generator(path, kind))
                if step not in table[label]:
                    table[label][step] = score(f"{label} step {step}", gen, real, args)
                    cache.write_text(json.dumps(table[label]))
                finals[label] = gen
            if args.own_batch:  # columns: thousands of images seen
                table[label] = {round(s * batch / 1000): v for s, v in table[label].items()}
            if args.equal_time:  # columns: the share of the wall-clock budget, in percent
                steps = budget(specs[name], args)[1]
                table[label] = {round(100 * s / steps): v for s, v in table[label].items()}
    return table, finals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--width", type=int, default=32, help="ngf = ndf")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--checkpoints", type=int, default=6, help="evenly spaced, the last at --steps")
    ap.add_argument("--num", type=int, default=1000, help="generated and real images per FID")
    ap.add_argument("--presets", default="colour-small", help="comma-separated gantool presets")
    ap.add_argument("--contender", action="append", default=[],
                    help="one more gantool contender, LABEL=PRESET:key=value;key=value (a "
                         "preset with overrides); repeatable")
    ap.add_argument("--variants", default="ema-eval",
                    help="ways to draw from gantool checkpoints: ema-eval (the product's), "
                         "ema-recal, ema-copied, ema-train, g-eval, g-train")
    ap.add_argument("--set", action="append", default=[], help="passed to every gantool run")
    ap.add_argument("--baseline", default="canonical",
                    help="the contender the ratios divide by: canonical or one of the presets")
    ap.add_argument("--own-batch", action="store_true",
                    help="gantool contenders keep their preset's batch size and train for the "
                         "same number of images (--steps x --batch); columns are images seen")
    ap.add_argument("--equal-time", action="store_true",
                    help="every contender trains for the wall-clock time the baseline takes for "
                         "--steps (by step times measured first, each in its own process), at "
                         "its own batch size; columns are percent of that budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the runs already in --out; train only the missing ones")
    ap.add_argument("--train-only", action="store_true", help="train, do not score")
    ap.add_argument("--last-only", action="store_true",
                    help="score each contender's last checkpoint only (a quicker sweep)")
    ap.add_argument("--json")
    ap.add_argument("--figure", help="final sample grids (64 seeds) side by side")
    ap.add_argument("--train-canonical", help=argparse.SUPPRESS)  # the child processes
    ap.add_argument("--time-step", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.train_canonical:
        return train_canonical(args, Path(args.train_canonical))
    if args.time_step:
        return print(time_steps(args.time_step, args))
    out = Path(args.out)
    specs = contender_specs(args)
    walls = train_all(specs, args, out)
    if args.train_only:
        return
    table, finals = score_all(specs, args, out)
    base = table[args.baseline]
    steps = sorted(base)
    unit = "k images" if args.own_batch else "% of time" if args.equal_time else "step"
    print(f"\n{args.resolution} px, width {args.width}, "
          + ("each preset's own batch, " if args.own_batch or args.equal_time
             else f"batch {args.batch}, ")
          + f"{args.steps * args.batch // 1000}k images, FID of {args.num} vs {args.num} real; "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{unit:<34}" + "".join(f"{s:>9}" for s in steps))
    for label, row in table.items():
        print(f"{label:<34}" + "".join(f"{row.get(s, float('nan')):>9.1f}" for s in steps))
        if label != args.baseline:
            print(f"{'  ratio to ' + args.baseline:<34}"
                  + "".join(f"{row.get(s, float('nan')) / base[s]:>9.2f}" for s in steps))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": {k: v for k, v in vars(args).items() if k != "train_canonical"},
            "load_average": os.getloadavg(), "train_wall_s": walls, "columns": unit,
            "step_s": step_times(args) if args.equal_time else None,
            "steps": {name: budget(spec, args)[1] for name, spec in specs.items()},
            "fid": {k: {str(s): v for s, v in row.items()} for k, row in table.items()},
        }, indent=2) + "\n")
    if args.figure:
        figure({k: g.generate(range(64), None) for k, g in finals.items()}, Path(args.figure),
               f"{steps[-1]}k images" if args.own_batch else
               "end of equal time" if args.equal_time else f"step {args.steps}")
        print(f"figure: {args.figure}")


def figure(grids: dict[str, np.ndarray], path: Path, when: str) -> None:
    """Each contender's 64 samples (seeds 0-63) at the last checkpoint, side by side."""
    from PIL import Image, ImageDraw

    from gantool.sampling.images import make_grid

    tiles = [Image.fromarray(make_grid(g, 8)) for g in grids.values()]
    w, h = tiles[0].size
    sheet = Image.new("RGB", (len(tiles) * (w + 12), h + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, tile) in enumerate(zip(grids, tiles)):
        draw.text((i * (w + 12) + 2, 3), f"{label}, {when}", fill="black")
        sheet.paste(tile, (i * (w + 12), 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)  # ~4x smaller

if __name__ == "__main__":
    main()
