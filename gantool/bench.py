"""`gantool bench`: images/s, latency and peak memory of every inference backend, measured.

Contenders (``--backend``) x resolutions x batch sizes; each contender and batch runs in its own
fresh Python process (``python -m gantool.bench WORKER_JSON``), so no contender inherits
another's warm caches, threads or allocator. A contender that cannot run on this machine (no
CUDA, no TensorRT) gets a row saying why instead of a number.

The roofline line: the generator's FLOPs per image are counted with
``torch.utils.flop_counter`` (multiply-adds x 2), the device's matrix rate is measured in the
same way as the contenders (a worker timing large matmuls in the contender's precision), and
every row shows the fraction of that rate its images/s reaches.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gantool.artifacts import PLAN, REPOSITORY
from gantool.errors import GantoolError, OptionError, did_you_mean, literal
from gantool.fileio import COUNT, NUMBER


@dataclass(frozen=True)
class Contender:
    name: str
    backend: str  # torch | onnx | trt | triton
    precision: str  # fp32 | fp16 | bf16: what the roofline compares with
    options: dict
    needs_cuda: bool = False
    needs_tensorrt: bool = False
    about: str = ""


CONTENDERS = {c.name: c for c in (
    Contender("torch", "torch", "fp32", {}, about="PyTorch eager, float32"),
    Contender("torch-bf16", "torch", "bf16", {"precision": "bf16"}, about="PyTorch eager, bf16"),
    Contender("torch-fp16", "torch", "fp16", {"precision": "fp16"}, needs_cuda=True,
              about="PyTorch eager, fp16"),
    Contender("torch-fp16-graphs", "torch", "fp16", {"precision": "fp16", "cuda_graphs": True},
              needs_cuda=True, about="fp16, CUDA graphs replayed per batch size"),
    Contender("torch-fp16-compile", "torch", "fp16", {"precision": "fp16", "compile": True},
              needs_cuda=True, about="fp16, torch.compile"),
    Contender("torch-compile", "torch", "fp32", {"compile": True},
              about="float32, torch.compile"),
    Contender("onnx", "onnx", "fp32", {}, about="ONNX Runtime (CUDA provider if present)"),
    Contender("onnx-fp16", "onnx", "fp16", {"fp16": True}, about="ONNX Runtime, FP16 model"),
    Contender("trt", "trt", "fp16", {}, needs_cuda=True, needs_tensorrt=True,
              about="TensorRT FP16 plan"),
    Contender("triton", "triton", "fp32", {},
              about="Triton cpu repository, render ensemble over gRPC, 1 client"),
)}


def parse_contenders(text: str) -> list[Contender]:
    out = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name not in CONTENDERS:
            raise GantoolError(f"unknown backend {name!r}{did_you_mean(name, CONTENDERS)}; "
                               "choose from "
                               f"{', '.join(CONTENDERS)}")
        out.append(CONTENDERS[name])
    if not out:
        raise OptionError("backend", "names no contender")
    return out


def parse_ints(text: str, option: str) -> list[int]:
    """Positive integers, comma-separated; a one-line error naming ``option`` for anything else."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()] if text.isascii() else []
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise OptionError(None, f"{{{option}}} expects positive integers like 1,8,32, got "
                          + literal(repr(text)))
    return values


# backend -> (the extra that installs it, the modules it needs: ONNX export needs onnxscript)
EXTRAS = {"onnx": ("onnx", ("onnxscript", "onnxruntime")), "trt": ("onnx", ("onnxscript",)),
          "triton": ("serve", ("onnxscript", "onnxruntime", "tritonclient"))}


def why_not(c: Contender, cuda: bool, tensorrt: bool) -> str | None:
    """Why a contender cannot run here (it is then listed as skipped), or None."""
    import importlib.util

    if c.needs_cuda and not cuda:
        return "needs a CUDA GPU"
    if c.needs_tensorrt and not tensorrt:
        return "needs TensorRT"
    extra, modules = EXTRAS.get(c.backend, ("", ()))
    if any(importlib.util.find_spec(m) is None for m in modules):
        return f"needs the {extra} extra: pip install 'gantool[{extra}]'"
    return None


# ---- the parent: prepare models, run workers, print ------------------------------------------

def run_bench(checkpoint: Path | None, contenders: list[Contender], resolutions: list[int],
              batches: list[int], ngf: int = 64, warmup: int = 3, calls: int = 10,
              threads: int = 0, repeats: int = 1, log=print) -> dict:
    """Every contender x resolution x batch, ``repeats`` times in fresh processes (medians);
    returns the JSON-able results."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    tensorrt = importlib.util.find_spec("tensorrt") is not None
    device = torch.cuda.get_device_name(0) if cuda else _cpu_name()
    with tempfile.TemporaryDirectory(prefix="gantool-bench-") as tmp:
        runnable = [c for c in contenders if not why_not(c, cuda, tensorrt)]
        models = _prepare(checkpoint, runnable, resolutions, max(batches), ngf, Path(tmp),
                          tensorrt and cuda)
        jobs = []  # (row head, spec or None); spec None: skipped
        for res, (ckpt, export, gflop) in models.items():
            for c in contenders:
                reason = why_not(c, cuda, tensorrt)
                for batch in batches:
                    head = {"backend": c.name, "resolution": res, "batch": batch,
                            "gflop_per_image": round(gflop, 4)}
                    if reason:
                        jobs.append(({**head, "skipped": reason}, None))
                        continue
                    jobs.append((head, {"kind": "contender", "contender": asdict(c),
                                        "ckpt": str(ckpt), "export": str(export),
                                        "batch": batch, "warmup": warmup, "calls": calls,
                                        "threads": threads}))
        measured: list[list[dict]] = [[] for _ in jobs]
        precisions = sorted({c.precision if cuda else "fp32" for c in contenders
                             if not why_not(c, cuda, tensorrt)})
        peak_runs: dict[str, list[float]] = {p: [] for p in precisions}
        for r in range(repeats):  # the order alternates, so drift hits every contender alike
            order = list(range(len(jobs)))
            for i in order if r % 2 == 0 else order[::-1]:
                head, spec = jobs[i]
                if spec is not None:
                    measured[i].append(_worker(spec))
                    log(_line({**head, **measured[i][-1]}) + (f"  (repeat {r + 1})"
                                                              if repeats > 1 else ""))
            for precision in precisions:
                peak_runs[precision].append(_worker({"kind": "peak", "precision": precision,
                                                     "threads": threads})["tflops"])
        rows = [head if spec is None else {**head, **_median_row(runs)}
                for (head, spec), runs in zip(jobs, measured)]
        peaks = {k: statistics.median(v) for k, v in peak_runs.items()}
    for row in rows:
        c = CONTENDERS[row["backend"]]
        peak = peaks.get(c.precision if cuda else "fp32")
        if "images_per_s" in row and peak:
            achieved = row["images_per_s"] * row["gflop_per_image"] / 1e3  # TFLOP/s
            row["tflops"] = float(f"{achieved:.4g}")  # significant digits: tiny models too
            row["roofline"] = float(f"{achieved / peak:.4g}")
    return {"device": device, "cuda": cuda, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "peak_tflops": peaks, "rows": rows,
            "threads": threads or os.cpu_count(), "repeats": repeats}


def _median_row(runs: list[dict]) -> dict:
    """One row from a contender's repeats: medians, the peak memory's maximum, every images/s."""
    ok = [r for r in runs if "images_per_s" in r]
    if not ok:
        return runs[-1]  # the error
    row = {k: statistics.median(r[k] for r in ok) for k in ("images_per_s", "p50_ms", "p99_ms")}
    row.update(peak_mib=max(r["peak_mib"] for r in ok), memory=ok[0]["memory"],
               repeats=[round(r["images_per_s"], 2) for r in ok])
    return row


def _prepare(checkpoint, contenders, resolutions, max_batch, ngf, tmp: Path, engine: bool):
    """res -> (checkpoint, export folder, GFLOP per image): the model(s) every contender uses."""
    import torch

    from gantool.export import FORMATS
    from gantool.export.pipeline import export_checkpoint
    from gantool.models.checkpoint import load_generator

    needs = {c.backend for c in contenders}
    fp16 = any(c.name == "onnx-fp16" for c in contenders)
    models = {}
    for res in resolutions:
        folder = tmp / f"r{res}"
        if checkpoint is not None:
            ckpt = checkpoint
        else:
            ckpt = random_checkpoint(folder / "ckpt", res, ngf)
        g, m, _, _ = load_generator(ckpt)
        res = m.resolution
        gflop = flops_per_image(g, m.nz) / 1e9
        export = folder / "export"
        if needs & {"onnx", "trt", "triton"}:
            formats = [FORMATS["onnx"]] + ([FORMATS["engine"]] if "trt" in needs and engine
                                           else [])
            export_checkpoint(ckpt, export, formats, fp16=fp16, verify=False, log=lambda s: None,
                              batch=(1, min(8, max_batch), max_batch))
            if "triton" in needs:  # batches of its own: written beside the export
                from gantool.export.triton import write_repository

                write_repository(export, "cpu", (1, max_batch, max_batch))
        models[res] = (ckpt, export, gflop)
        del g
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return models


def random_checkpoint(folder: Path, resolution: int, ngf: int, preset: str | None = None) -> Path:
    """A checkpoint of a DCGAN generator (3 channels), or of a preset's generator at its own
    widths, with random weights, for measuring speed (which does not depend on the weights)."""
    import torch

    from gantool.config import ModelConfig, RunConfig, apply_overrides, preset_config
    from gantool.models import build_generator
    from gantool.models.checkpoint import record, write_checkpoint

    if preset:
        cfg = apply_overrides(preset_config(preset), {"model.resolution": resolution})
    else:
        cfg = RunConfig(name="bench", model=ModelConfig(resolution=resolution, ngf=ngf,
                                                        channels=3))
    torch.manual_seed(0)
    g = build_generator(cfg.model).eval()
    path = Path(folder) / f"random-{resolution}px-{preset or f'ngf{ngf}'}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(record(config=cfg.to_dict(), step=0, G=g.state_dict(), G_ema=None), path)
    return path


def flops_per_image(generator, nz: int) -> float:
    """FLOPs of one image through ``generator`` (2 per multiply-add: ``generator_cost``)."""
    from gantool.models.layers import generator_cost

    return 2.0 * generator_cost(generator, nz)[1]


def _worker(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "gantool.bench", json.dumps(spec)],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": tail[0][:300]}
    return json.loads(lines[-1])


def _line(row: dict) -> str:
    head = f"{row['backend']:<19} {row['resolution']:>5} px  batch {row['batch']:>4}"
    if "error" in row:
        return f"{head}  failed: {row['error']}"
    return (f"{head}  {row['images_per_s']:>10.1f} img/s  p50 {row['p50_ms']:8.2f} ms  "
            f"p99 {row['p99_ms']:8.2f} ms")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"CPU x {os.cpu_count()}"


# what ``compare`` reads of a baseline (gantool bench --json), checked by fileio.read_record
BASELINE = {"rows?": [{"backend": str, "resolution": COUNT, "batch": COUNT,
                       "images_per_s?": NUMBER}]}


def compare(results: dict, baseline: dict) -> None:
    """Add ``vs_baseline`` (images/s ratio) to rows that the baseline also measured."""
    base = {(r["backend"], r["resolution"], r["batch"]): r for r in baseline.get("rows", [])}
    for row in results["rows"]:
        other = base.get((row["backend"], row["resolution"], row["batch"]))
        if other and "images_per_s" in row and other.get("images_per_s"):
            row["vs_baseline"] = round(row["images_per_s"] / other["images_per_s"], 4)


# ---- the workers -----------------------------------------------------------------------------

def _contender_worker(spec: dict) -> dict:
    import torch

    c = Contender(**spec["contender"])
    batch = spec["batch"]
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    seeds = list(range(batch))
    cuda = torch.cuda.is_available()
    server = None
    try:
        if c.backend == "triton":
            from gantool.backends import open_triton
            from gantool.serve.server import TritonServer, free_port

            server = TritonServer(Path(spec["export"]) / REPOSITORY, free_port(),
                                  free_port())
            server.start()
            gen = open_triton(server.grpc_url, request_batch=batch, concurrency=1)
        else:
            from gantool.backends import load_backend

            path = spec["ckpt"] if c.backend == "torch" else spec["export"]
            if c.backend == "trt":
                path = str(Path(spec["export"]) / PLAN)
            options = dict(c.options)
            if c.backend == "onnx" and spec["threads"]:
                options["threads"] = spec["threads"]
            gen = load_backend(c.backend, path, **options)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for _ in range(spec["warmup"]):
            gen.generate(seeds, None)
        times = []
        for _ in range(spec["calls"]):
            t0 = time.perf_counter()
            gen.generate(seeds, None)  # returns host uint8 images: synchronised
            times.append(time.perf_counter() - t0)
    finally:
        if server is not None:
            server.stop()
    p50 = statistics.median(times)
    if cuda and c.backend in ("torch", "trt"):
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
        memory = "cuda"
    else:
        peak_mib, memory = _peak_rss_mib(), "process rss"
    return {"images_per_s": batch / p50, "p50_ms": 1e3 * p50,
            "p99_ms": 1e3 * sorted(times)[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
            "peak_mib": round(peak_mib, 1), "memory": memory}


def _peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss over from the parent across exec, so a fresh worker would report the parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_worker(spec: dict) -> dict:
    """The device's measured matrix rate in ``precision``: median of timed square matmuls."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    cuda = torch.cuda.is_available()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        spec["precision"]]
    n = 8192 if cuda else 2048
    device = "cuda" if cuda else "cpu"
    if cuda:  # float32 convolutions run on TF32 tensor cores by default: compare like with like
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    for i in range(13):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return {"tflops": 2 * n**3 / statistics.median(times) / 1e12}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    worker = _peak_worker if spec["kind"] == "peak" else _contender_worker
    print(json.dumps(worker(spec)))


if __name__ == "__main__":
    main(sys.argv[1:])
