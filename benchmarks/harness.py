"""What every benchmark here shares: fresh-process workers, timing loops, medians.

Each contender runs in its own Python process (a benchmark re-invokes itself with its worker
arguments and reads back the last JSON line the worker prints), so no contender inherits
another's warm caches, threads or allocator state.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def run_json(argv: list[str], name: str) -> dict:
    """Run ``argv`` in a fresh interpreter and parse the JSON line it prints last."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise SystemExit(f"worker {name!r} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def run_json_parallel(argvs: list[list[str]], name: str) -> list[dict]:
    """Run several workers at once, each in its own interpreter; their JSON lines, in order."""
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in argvs]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = "\n".join((err or out).strip().splitlines()[-15:])
            raise SystemExit(f"worker {name!r} failed (exit {proc.returncode}):\n{tail}")
        results.append(json.loads(lines[-1]))
    return results


def time_calls(fn: Callable, warmup: int, n: int, sync: Callable[[], None] = lambda: None):
    """Call ``fn()`` warmup + n times; -> (seconds of each timed call, the last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times, out


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def random_checkpoint(folder, resolution: int, ngf: int, preset: str | None = None):
    """``gantool.bench.random_checkpoint`` (a DCGAN generator with random weights: speed does
    not depend on them) -> (path, its StoredGenerator)."""
    from gantool.bench import random_checkpoint as make
    from gantool.models.checkpoint import load_generator

    path = make(Path(folder), resolution, ngf, preset)
    return path, load_generator(path)


def stylegan2_checkpoint(folder, resolution: int = 1024, z_dim: int = 512,
                         channel_base: int = 32768, channel_max: int = 512):
    """A StyleGAN2 generator with the official FFHQ shapes (z and w 512, 8 mapping layers,
    channels min(32768 / resolution, 512), skip, conv clamp 256) and random weights at the
    scales NVIDIA's initialisation gives them, written as ``gantool import`` writes an imported
    one -> (path, its StoredGenerator). Speed does not depend on the weights."""
    import math

    import torch

    from gantool.config import ModelConfig, RunConfig
    from gantool.models import build_generator
    from gantool.models.checkpoint import load_generator, record, write_checkpoint

    channels = {str(2**i): min(channel_base // 2**i, channel_max)
                for i in range(2, int(math.log2(resolution)) + 1)}
    model = ModelConfig(arch="stylegan2", prior="stylegan", resolution=resolution, channels=3,
                        nz=z_dim, arch_params={
                            "w_dim": z_dim, "mapping_layers": 8, "channels": channels,
                            "architecture": "skip", "conv_clamp": 256, "use_noise": True})
    net = build_generator(model)
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, t in net.state_dict().items():
        fan_in = t[0].numel() if t.ndim > 1 else 1
        if name.endswith("affine.bias"):
            value = torch.ones_like(t)  # styles start at 1
        elif name.endswith(("bias", "w_avg", "fir")):
            value = t.clone() if name.endswith("fir") else torch.zeros_like(t)
        elif name.endswith(("conv0.weight", "conv1.weight", "torgb.weight", "const")):
            value = torch.randn(t.shape, generator=g)  # demodulated: the scale cancels
        elif name.endswith("noise"):
            value = torch.randn(t.shape, generator=g) * 0.1
        else:  # fully connected: the equalised learning rate's 1 / sqrt(fan in)
            value = torch.randn(t.shape, generator=g) / math.sqrt(fan_in)
        if "torgb.affine" in name:  # toRGB's gain 1 / sqrt(its input channels), folded in
            value = value / math.sqrt(t.shape[0])
        state[name] = value
    path = Path(folder) / f"stylegan2-{resolution}.pt"
    config = RunConfig(name=f"stylegan2-{resolution}", model=model).to_dict()
    write_checkpoint(record(config=config, G=state, step=0, origin={
        "kind": "stylegan2", "tool": "benchmarks/harness.py (random weights)"}), path)
    return path, load_generator(path)
