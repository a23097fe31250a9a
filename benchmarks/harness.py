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
