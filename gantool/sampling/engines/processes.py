"""`gantool generate --devices`: one `gantool generate` process per device, each drawing its
shard of the seed list into its own folder (``--shard I/N``), watched from here with one
progress bar over all of them, then merged into one index (``gantool merge-shards``).

Each process is a whole `gantool generate` run: its own backend, writer pool and folder lock,
so a device's failure stops only its shard, and running the same command again finishes what
is missing. Ctrl-C or SIGTERM here is passed on: every process stops as a render does (whole
files, all listed) before this one exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from gantool.errors import GantoolError
from gantool.progress import StepProgress
from gantool.sampling.engines import ShardCommand
from gantool.sampling.shards import Shard
from gantool.sampling.writer import MANIFEST
from gantool.system import die_with_parent, usable_cpus


def run_on_devices(command: ShardCommand, devices: list[str], out: Path, total: int,
                   progress: bool, workers_given: bool, takes_device: bool) -> list[str]:
    """Run ``gantool generate`` (``command``: its arguments for a shard) once per device on
    shard i of len(devices), with one progress bar counting every shard's manifest rows; a one-line
    error for a process that failed. Returns the processes' last output lines. A process
    sees only its GPU (CUDA_VISIBLE_DEVICES, which TensorRT also follows) and, where the
    backend takes ``--device``, is given it."""
    n = len(devices)
    procs = [_start(command, i, device, n, workers_given, takes_device)
             for i, device in enumerate(devices)]
    lines: list[list[str]] = [[] for _ in procs]
    readers = [threading.Thread(target=_collect, args=(p, lines[i]), daemon=True)
               for i, p in enumerate(procs)]
    for r in readers:
        r.start()
    try:
        watch(procs, [ShardRows(Shard(i, n, "devices").folder(out)) for i in range(n)], total,
               progress)
    except BaseException:
        for p in procs:  # stopped here: every process stops as a render does
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    for r in readers:
        r.join()
    last = [next((x for x in reversed(got) if x.strip()), "no output") for got in lines]
    for i, (p, device) in enumerate(zip(procs, devices)):
        if p.returncode != 0:
            raise GantoolError(f"shard {i}/{n} on {device} failed (exit code {p.returncode}): "
                               f"{last[i].removeprefix('error: ')}; run the same command "
                               "again to finish (finished images are kept)")
    return [f"{device}: {line}" for device, line in zip(devices, last)]


def _start(command: ShardCommand, i: int, device: str, n: int, workers_given: bool,
           takes_device: bool) -> subprocess.Popen:
    share = max(1, usable_cpus() // n)  # the encoders and CPU threads split the cores
    args = command(i, n, ("cpu" if device == "cpu" else "cuda") if takes_device else None,
                   None if workers_given else share)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **_visible(device, share)}
    # its own session: a Ctrl-C in the terminal reaches it once, from here
    return subprocess.Popen([sys.executable, "-m", "gantool", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True,
                            preexec_fn=lambda: die_with_parent(signal.SIGTERM))


def watch(procs: list[subprocess.Popen], counters: list[ShardRows], total: int,
           progress: bool) -> None:
    """One progress bar over every process's images until all have ended."""
    with StepProgress(Console(stderr=True), "generate", total, enabled=progress,
                      short=("img/s",)) as bar:
        t0 = time.perf_counter()
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            done = sum(c.count() for c in counters)
            bar.advance(min(done, total),
                        {"img/s": f"{done / max(time.perf_counter() - t0, 1e-9):,.1f}"})


def _visible(device: str, share: int) -> dict[str, str]:
    """The environment that gives a process ``device`` alone: its GPU as the only visible one
    (an index into any CUDA_VISIBLE_DEVICES already set), or ``share`` CPU threads."""
    if device == "cpu":
        return {"OMP_NUM_THREADS": str(share), "CUDA_VISIBLE_DEVICES": ""}
    index = int(device.partition(":")[2] or 0)
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return {"CUDA_VISIBLE_DEVICES": visible[index] if visible else str(index)}


def _collect(proc: subprocess.Popen, into: list[str]) -> None:
    for line in proc.stdout:
        into.append(line.rstrip("\n"))


class ShardRows:
    """The rows of a shard folder's growing manifests (its own, or one per class folder), each
    read on from where the last count stopped."""

    def __init__(self, folder: Path):
        self.folder, self.offsets, self.rows = folder, {}, 0

    def count(self) -> int:
        for path in [self.folder / MANIFEST, *self.folder.glob(f"class[0-9]*/{MANIFEST}")]:
            try:
                with path.open("rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    chunk = f.read()
            except OSError:
                continue
            whole = chunk.rfind(b"\n") + 1
            self.rows += chunk.count(b"\n", 0, whole)
            self.offsets[path] = self.offsets.get(path, 0) + whole
        return self.rows
