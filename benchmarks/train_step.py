"""Time one gantool DCGAN training step against the canonical pytorch/examples step.

Both contenders train the same 64 px DCGAN (nz 100, ngf = ndf = 64, 3 channels) on the same
batch size, device and thread count. Each one runs in its own fresh Python process (this script
re-invokes itself with ``--worker NAME`` and reads one JSON line back); the pair is run
``--repeats`` times with the order alternating. A worker does ``--warmup`` untimed steps, then
``--steps`` timed ones, and reports the median seconds per step.

* gantool: ``Trainer.train_step(Trainer.real_batch(step))``, the real training code: the batch
  is assembled from the in-memory uint8 dataset (the bundled Fashion-MNIST sample, upscaled to
  64 px, 3 channels) and the EMA generator is updated, both inside the timed step.
* canonical: ``benchmarks/canonical_dcgan.canonical_step`` on a pre-made float batch, so it pays
  no data-loading cost at all: a conservative comparison for gantool.

A second table shows that data never starves training: the decode rate of
``gantool.data.load_dataset`` on a folder of PNGs (twemoji-64 by default) and the batch-assembly
rate of ``Trainer.real_batch``, each against the training step's images/s.

    python benchmarks/train_step.py                  # full run, CPU, several minutes
    python benchmarks/train_step.py --device cuda --json out.json
    python benchmarks/train_step.py --device cuda --set train.cuda_graphs=true --profile 20
    python benchmarks/train_step.py --tiny           # seconds; for CI (no timing claims)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from harness import loadavg, run_json, spread, time_calls

HERE = Path(__file__).resolve().parent
TWEMOJI_TAR = HERE.parents[1] / "shared" / "data" / "twemoji-64" / "twemoji-64.tar"
CONTENDERS = ("gantool", "canonical")
TINY = {"resolution": 32, "ngf": 8, "ndf": 8, "batch": 8, "repeats": 2, "steps": 2, "warmup": 1,
        "threads": 1,  # a smoke test: one thread stays fast on a loaded CI machine
        "data_rate": False}
RATIO_LINE = "ratio gantool/canonical"
CONSERVATIVE_NOTE = (
    "note: canonical trains on a pre-made float batch (no data loading); gantool assembles its "
    "batch from uint8 and updates its EMA generator inside the timed step, so the comparison "
    "is conservative for gantool."
)


# ---- workers (each runs in a fresh process) ---------------------------------------------------
def _setup_torch(args):
    import torch

    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return torch


def _sync(torch, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_steps(torch, device: str, step, warmup: int, steps: int) -> tuple[list[float], dict]:
    """Run ``step()`` warmup + steps times; -> (seconds of each timed step, last result)."""
    return time_calls(step, warmup, steps, lambda: _sync(torch, device))


def _profile(torch, device: str, step, steps: int) -> dict:
    """GPU kernel time per step under torch.profiler, and the kernels that take the most."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(torch, device)
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_device_time_total)[:5]
    return {"kernel_ms_per_step": total / 1e3 / steps,
            "kernel_launches_per_step": sum(e.count for e in events) / steps,
            "top_ops": [[e.key[:60], round(e.self_device_time_total / 1e3 / steps, 3)]
                        for e in top]}


def worker_canonical(args) -> dict:
    torch = _setup_torch(args)
    sys.path.insert(0, str(HERE))
    from canonical_dcgan import build_all, canonical_step

    torch.manual_seed(0)
    netG, netD, optG, optD = build_all(args.nz, args.ngf, args.ndf, args.channels,
                                       args.resolution, args.device, args.max_channels)
    shape = (args.batch, args.channels, args.resolution, args.resolution)
    real = torch.rand(shape, device=args.device).mul_(2).sub_(1)  # pre-made, in [-1, 1]
    def step():
        return canonical_step(netG, netD, optG, optD, real, args.nz)

    times, logs = _time_steps(torch, args.device, step, args.warmup, args.steps)
    result = {"step_s": times, **{k: float(v) for k, v in logs.items()}}
    if args.profile:
        result["profile"] = _profile(torch, args.device, step, args.profile)
    return result


def _gantool_trainer(args):
    from rich.console import Console

    from gantool.config import RunConfig, apply_overrides, parse_set_options
    from gantool.train.trainer import Trainer

    cfg = apply_overrides(RunConfig(), {
        "model.resolution": args.resolution, "model.channels": args.channels,
        "model.nz": args.nz, "model.ngf": args.ngf, "model.ndf": args.ndf,
        "model.max_channels": args.max_channels,
        "train.batch_size": args.batch, "train.labels": "hard", "train.device": args.device,
        "data.path": args.data, "train.compile": args.compile,
        **parse_set_options(args.set),
    })
    # The bundled sample is built by another part of the project; give it a moment if absent.
    for attempt in range(6):
        try:
            return Trainer(cfg, Console(stderr=True, quiet=True), progress=False)
        except Exception as e:  # retried, then re-raised
            if attempt == 5 or "builtin" not in str(e).lower():
                raise
            time.sleep(10)
    raise AssertionError("unreachable")


def worker_gantool(args) -> dict:
    torch = _setup_torch(args)
    trainer = _gantool_trainer(args)

    def step():
        return trainer.train_step(trainer.real_batch(trainer.step))

    times, logs = _time_steps(torch, args.device, step, args.warmup, args.steps)
    result = {"step_s": times, **{k: float(v) for k, v in logs.items()},
              "dataset_images": len(trainer.data), "amp": str(trainer.hw.amp_dtype or "off"),
              "channels_last": trainer.hw.channels_last}
    if args.profile:
        result["profile"] = _profile(torch, args.device, step, args.profile)
    if args.assemble_batches:
        t_batches = []
        for i in range(args.assemble_batches):
            t0 = time.perf_counter()
            trainer.real_batch(trainer.step + i)
            _sync(torch, args.device)
            t_batches.append(time.perf_counter() - t0)
        result["assemble_s"] = t_batches
    return result


def worker_decode(args) -> dict:
    _setup_torch(args)  # the same thread setting as the training workers
    from gantool.data import load_dataset
    from gantool.system import usable_cpus

    seconds, n = [], 0
    for _ in range(args.decode_repeats):
        t0 = time.perf_counter()
        data = load_dataset(args.decode_folder, args.resolution, args.channels, progress=False)
        seconds.append(time.perf_counter() - t0)
        n = len(data)
    return {"decode_s": seconds, "images": n, "skipped": len(data.skipped),
            "workers": usable_cpus()}


WORKERS = {"gantool": worker_gantool, "canonical": worker_canonical, "decode": worker_decode}


# ---- the driver -------------------------------------------------------------------------------
def _worker_argv(args, name: str) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
            "--device", args.device, "--batch", str(args.batch),
            "--resolution", str(args.resolution), "--channels", str(args.channels),
            "--nz", str(args.nz), "--ngf", str(args.ngf), "--ndf", str(args.ndf),
            "--max-channels", str(args.max_channels), "--data", args.data,
            "--warmup", str(args.warmup), "--steps", str(args.steps),
            "--threads", str(args.threads), "--assemble-batches", str(args.assemble_batches),
            "--decode-repeats", str(args.decode_repeats), "--profile", str(args.profile)]
    if args.decode_folder:
        argv += ["--decode-folder", str(args.decode_folder)]
    if args.compile:
        argv.append("--compile")
    for item in args.set:
        argv += ["--set", item]
    return argv


def run_worker(args, name: str) -> dict:
    """Run one worker in a fresh interpreter and parse the JSON line it prints last."""
    return run_json(_worker_argv(args, name), name)


def _decode_folder(args, tmp: Path) -> tuple[str | None, str]:
    """(folder to decode or None, a label or the reason it is skipped)."""
    if args.decode_folder:
        return str(args.decode_folder), str(args.decode_folder)
    if not TWEMOJI_TAR.is_file():
        return None, f"skipped: no --decode-folder given and {TWEMOJI_TAR} does not exist"
    with tarfile.open(TWEMOJI_TAR) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp, filter="data")
        else:  # Python without extraction filters; the archive is a trusted project file
            tar.extractall(tmp)
    return str(tmp), f"{TWEMOJI_TAR.name} (extracted)"


def drive(args) -> dict:
    load_before = loadavg()
    t_start = time.perf_counter()
    cfg_line = (f"DCGAN training step: {args.resolution} px, nz {args.nz}, ngf {args.ngf}, "
                f"ndf {args.ndf}, at most {args.max_channels} channels, {args.channels} channels "
                f"out, batch {args.batch}, {args.device}, {args.threads} threads"
                + (f", gantool --set {' '.join(args.set)}" if args.set else ""))
    print(cfg_line)
    print(f"{args.repeats} repeats x ({args.warmup} warm-up + {args.steps} timed steps), each "
          "contender in a fresh process, order alternating")
    print(f"load average before: {load_before}", flush=True)
    if load_before and load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_before[0]} on {os.cpu_count()} CPUs: other "
              "processes compete for the cores, timings will be noisy", flush=True)

    runs: list[dict] = []
    for r in range(args.repeats):
        order = CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]
        row: dict = {"repeat": r, "order": list(order)}
        for name in order:
            res = run_worker(args, name)
            res["s_per_step"] = statistics.median(res["step_s"])
            res["images_per_s"] = args.batch / res["s_per_step"]
            row[name] = res
        row["ratio"] = row["canonical"]["s_per_step"] / row["gantool"]["s_per_step"]
        row["ratio_best"] = min(row["canonical"]["step_s"]) / min(row["gantool"]["step_s"])
        runs.append(row)
        print(f"  repeat {r + 1}/{args.repeats} ({' then '.join(order)}): "
              f"gantool {row['gantool']['images_per_s']:8.1f} img/s, "
              f"canonical {row['canonical']['images_per_s']:8.1f} img/s, "
              f"ratio {row['ratio']:.3f}", flush=True)

    summary: dict = {}
    print()
    print(f"{'contender':<11} {'img/s median':>13} {'min':>9} {'max':>9} {'ms/step':>9}")
    for name in CONTENDERS:
        med, lo, hi = spread([row[name]["images_per_s"] for row in runs])
        summary[name] = {"images_per_s_median": med, "images_per_s_min": lo,
                         "images_per_s_max": hi, "ms_per_step": 1000 * args.batch / med}
        print(f"{name:<11} {med:13.1f} {lo:9.1f} {hi:9.1f} {1000 * args.batch / med:9.1f}")
    med, lo, hi = spread([row["ratio"] for row in runs])
    summary["ratio"] = {"median": med, "min": lo, "max": hi}
    print(f"{RATIO_LINE}: median {med:.3f} (min {lo:.3f}, max {hi:.3f}) over {args.repeats} "
          "repeats (> 1: gantool is faster)")
    best = statistics.median(row["ratio_best"] for row in runs)
    summary["ratio_best_step"] = best
    print(f"(the same ratio from each worker's fastest step, least disturbed by other load: "
          f"median {best:.3f})")
    if args.profile:
        print(f"profiled {args.profile} steps (first repeat): device kernel time per step vs "
              "the measured step")
        for name in CONTENDERS:
            prof = runs[0][name]["profile"]
            step_ms = 1e3 * runs[0][name]["s_per_step"]
            print(f"  {name:<10} {prof['kernel_ms_per_step']:7.2f} ms of {step_ms:7.2f} ms "
                  f"({prof['kernel_ms_per_step'] / step_ms:.0%} busy), "
                  f"{prof['kernel_launches_per_step']:.0f} kernels/step; top: "
                  + ", ".join(f"{k} {ms:.2f} ms" for k, ms in prof["top_ops"][:3]))
    g = runs[0]["gantool"]
    print(f"gantool's Trainer on {args.device}: autocast {g['amp']}, channels_last "
          f"{g['channels_last']}, compile {args.compile}; canonical runs float32, contiguous, "
          "eager, as the example" + (" (cuDNN convolutions on TF32, PyTorch's default)"
                                     if args.device == "cuda" else "") + ".")
    print(CONSERVATIVE_NOTE)

    data_rates = None
    if args.data_rate:
        data_rates = data_rate_table(args, runs, summary["gantool"]["images_per_s_median"])

    load_after = loadavg()
    print(f"load average after: {load_after}  (wall {time.perf_counter() - t_start:.0f} s)")
    return {"config": {k: v for k, v in vars(args).items() if k != "json"},
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
            "load_before": load_before, "load_after": load_after,
            "runs": runs, "summary": summary, "data_rates": data_rates,
            "note": CONSERVATIVE_NOTE}


def data_rate_table(args, runs: list[dict], train_rate: float) -> dict:
    rows: list[tuple[str, float | None, str]] = []
    out: dict = {"train_step_images_per_s": train_rate}
    with tempfile.TemporaryDirectory(prefix="gantool-bench-") as tmp:
        folder, label = _decode_folder(args, Path(tmp))
        if folder is None:
            rows.append(("decode (load_dataset)", None, label))
        else:
            sub = argparse.Namespace(**{**vars(args), "decode_folder": folder})
            res = run_worker(sub, "decode")
            rate = res["images"] / statistics.median(res["decode_s"])
            out["decode"] = {**res, "folder": label, "images_per_s": rate,
                             "ratio_to_train_step": rate / train_rate}
            rows.append((f"decode: load_dataset({label}): {res['images']} PNGs, "
                         f"{res['workers']} processes", rate, ""))
    assemble = [t for row in runs for t in row["gantool"].get("assemble_s", [])]
    if assemble:
        rate = args.batch / statistics.median(assemble)
        out["assemble"] = {"images_per_s": rate, "ratio_to_train_step": rate / train_rate,
                           "batches_timed": len(assemble)}
        rows.append((f"batch assembly: Trainer.real_batch (uint8 -> float, batch {args.batch})",
                     rate, ""))
    print()
    print(f"data rates at {args.resolution} px vs the gantool training step "
          f"({train_rate:,.1f} img/s)")
    w = max(len("source"), *(len(name) for name, _, _ in rows))
    print(f"{'source':<{w}} {'img/s':>10} {'loader / train step':>20}")
    for name, rate, why in rows:
        if rate is None:
            print(f"{name:<{w}} {why}")
        else:
            print(f"{name:<{w}} {rate:10,.0f} {rate / train_rate:19,.1f}x")
    print("(load_dataset decodes the whole set once, before training; real_batch runs every "
          "step and is already inside the gantool step time above)")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--repeats", type=int, default=5, help="fresh-process pairs (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per worker (default 3)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per worker (default 20)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads in every worker (default: os.cpu_count())")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--nz", type=int, default=100)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--max-channels", type=int, default=512,
                   help="cap on any layer's channels, in both contenders (gantool's default 512; "
                        "64 px never reaches it)")
    p.add_argument("--data", default="builtin:fashion-mnist",
                   help="gantool's training data (default: the bundled Fashion-MNIST sample, "
                        "resized to --resolution)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a gantool config override, e.g. --set train.amp=off (repeatable)")
    p.add_argument("--json", metavar="OUT", help="also write every measurement to OUT")
    p.add_argument("--compile", action="store_true",
                   help="gantool with train.compile (torch.compile of G and D; the canonical "
                        "step stays eager); compilation happens in the untimed warm-up")
    p.add_argument("--profile", type=int, default=0, metavar="STEPS",
                   help="after timing, run STEPS more under torch.profiler and report the GPU "
                        "kernel time per step (how busy the device was) and the top kernels")
    p.add_argument("--data-rate", action=argparse.BooleanOptionalAction, default=True,
                   help="print the decode / batch-assembly table (default on; off with --tiny)")
    p.add_argument("--decode-folder", type=Path,
                   help=f"image folder to decode (default: {TWEMOJI_TAR} extracted to a temp dir)")
    p.add_argument("--decode-repeats", type=int, default=3, help="load_dataset calls (median)")
    p.add_argument("--assemble-batches", type=int, default=50,
                   help="real_batch calls timed per gantool worker for the data table")
    p.add_argument("--tiny", action="store_true",
                   help="CI smoke size: 32 px, ngf=ndf=8, batch 8, 1 thread, 2 repeats of "
                        "1 + 2 steps, no data table (explicit flags still win); no timing claims")

    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    if p.parse_known_args(argv)[0].tiny:  # tiny sizes are defaults: explicit flags still win
        p.set_defaults(**TINY)
    args = p.parse_args(argv)
    if not args.data_rate:
        args.assemble_batches = 0
    if args.profile and args.device != "cuda":
        p.error("--profile measures GPU kernel time: it needs --device cuda")
    for name in ("batch", "repeats", "steps", "threads", "decode_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps({"worker": args.worker, **WORKERS[args.worker](args)}), flush=True)
        return 0
    result = drive(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
