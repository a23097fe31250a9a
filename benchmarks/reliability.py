"""Replay a hostile-input corpus against the real CLI and print one table: case, expected, got.

    python benchmarks/reliability.py                 # everything (about 16 minutes on 2 cores)
    python benchmarks/reliability.py --skip kills,triton --json out.json

Every case runs ``gantool ...`` in its own process under a timeout (a hang is a failure, never
a wait), and is judged by what a user would see: a correct result, or exactly one
``error: ...`` line with exit code 2 and no traceback. The peak memory of each process
(VmHWM, sampled every 50 ms) is in the table. Groups:

* ``data``: a folder of good images plus one bad file each (zero bytes, truncated, text, CMYK,
  16-bit, palette + alpha, 1x1, a 900-megapixel decompression bomb, a symlink loop, a FIFO),
  archives with ``../`` and absolute member names, and a zip holding a 300 MiB member;
* ``args``: bad configurations and arguments (non-finite values, booleans as numbers, tiny
  truncations, a hundred billion seeds, run names with ``/``);
* ``small``: numbers in other scripts' digits (``--class '²'``, seeds, shards, devices, time
  budgets, ``--set``, the explore page), a preset's batch on a folder of 3 images, ``.pt``
  files that are no checkpoint (a pickled module, a plain pickle, a truncated one), a hundred
  thousand writer workers;
* ``checkpoints``: forged ones (no config, wrong shapes, wrong types) and one whose pickle would
  run code (a marker file it would create must not exist);
* ``kills``: 20 SIGKILLs at random moments of a training run, each followed by a resume: every
  checkpoint stays readable and the run ends at its last step;
* ``stops``: Ctrl-C or SIGTERM while training writes the checkpoint of a stop (at
  ``--max-time``, after the last step), once (the save finishes, said) and twice (it is
  aborted; the checkpoint before it stays whole);
* ``outputs``: two renders racing for one folder, SIGTERM to a whole render job (process
  writers) and to a video, output paths that cannot be written, a billion-image batch, an
  evaluation against one image, bad timeouts;
* ``folders``: resuming a folder or merging shards drawn by another model, in another format
  or layout; merge rows naming files outside their shard, tars cut short; empty shards, one
  device; a webdataset render killed again and again, and rows lost after a tar was linked;
* ``engines``: a job's environment naming half a shard (an index without its count), the
  process and Ray engines inside a sharded job, Ray addresses with no cluster behind them,
  more CPUs per actor than a node has, SIGTERM and Ctrl-C to a Ray render (driver, whole job);
* ``records``: every record gantool reads back (export.json, a plan's sidecar, ONNX metadata,
  config.json, session.json, metrics rows, a bench baseline, a config file, shard.json) with
  values of the wrong kind: one line naming the file and key, or skipped where reading is
  lenient on purpose;
* ``runfiles``: damaged ``metrics.jsonl`` lines and a damaged newest checkpoint, resumed;
* ``exports``: a bit flip inside a weight, a corrupted op name, metadata that disagrees with
  the graph;
* ``triton``: a bad request beside good ones, a server killed mid-render and restarted, the
  smallest truncation, a repository under a path with a space and an accent, a model whose
  code raises, one port for two protocols, SIGTERM to a shared-memory render.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

GROUPS = ("data", "args", "small", "checkpoints", "kills", "stops", "outputs", "folders",
          "engines", "records", "runfiles", "exports", "triton")
TINY = ["--preset", "fashion-mnist", "--resolution", "28", "--channels", "1", "--ngf", "8",
        "--ndf", "8", "--batch-size", "2", "--no-progress", "--set", "train.log_every=1"]


@dataclass
class Outcome:
    code: int | None  # None: killed at the timeout
    out: str
    err: str
    seconds: float
    peak_mib: float


def gantool(*args, timeout: float = 120, cwd: Path | None = None) -> Outcome:
    """``gantool ARGS`` in a fresh process: its exit code, output, time and peak memory."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "gantool", *map(str, args)], stdout=out,
                                stderr=err, cwd=cwd)
        code, peak = None, 0.0
        while time.perf_counter() - start < timeout:
            peak = max(peak, _vm_hwm(proc.pid))  # wait4's ru_maxrss would count our own pages
            if proc.poll() is not None:
                code = proc.returncode
                break
            time.sleep(0.05)
        if code is None:
            proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        return Outcome(code, out.read().decode(errors="replace"),
                       err.read().decode(errors="replace"), time.perf_counter() - start, peak)


def one_line_error(o: Outcome, words: str = "") -> tuple[bool, str]:
    lines = o.err.strip().splitlines()
    last = lines[-1] if lines else ""
    ok = (o.code == 2 and "Traceback" not in o.err and last.startswith("error:")
          and words in last)
    return ok, _got(o, last)


def success(o: Outcome, words: str = "") -> tuple[bool, str]:
    ok = o.code == 0 and "Traceback" not in o.err and words in o.out + o.err
    lines = (o.out + o.err).strip().splitlines() or [""]
    return ok, _got(o, next((ln for ln in reversed(lines) if words and words in ln), lines[-1]))


def _got(o: Outcome, text: str) -> str:
    if o.code is None:
        return "HANG (killed at the timeout)"
    if "Traceback" in o.err:
        return f"TRACEBACK: {o.err.strip().splitlines()[-1][:90]}"
    return f"exit {o.code}: {text[:110]}"


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, group: str, case: str, expected: str, verdict: tuple[bool, str],
            outcome: Outcome | None = None) -> None:
        ok, got = verdict
        row = {"group": group, "case": case, "expected": expected, "got": got, "ok": ok,
               "seconds": round(outcome.seconds, 1) if outcome else None,
               "peak_mib": round(outcome.peak_mib) if outcome else None}
        self.rows.append(row)
        mark = "ok  " if ok else "FAIL"
        print(f"{mark} {group:<11} {case:<38} {got}", flush=True)

    def print(self) -> None:
        print(f"\n{'case':<50} {'expected':<30} {'ok':<4} {'s':>6} {'peak MiB':>9}  got")
        for r in self.rows:
            print(f"{r['group'] + ': ' + r['case']:<50} {r['expected']:<30} "
                  f"{'yes' if r['ok'] else 'NO':<4} {r['seconds'] or 0:>6.1f} "
                  f"{r['peak_mib'] or 0:>9}  {r['got']}")
        bad = [r for r in self.rows if not r["ok"]]
        tracebacks = sum("TRACEBACK" in r["got"] for r in self.rows)
        hangs = sum("HANG" in r["got"] for r in self.rows)
        peak = max((r["peak_mib"] or 0 for r in self.rows), default=0)
        print(f"\n{len(self.rows)} cases: {len(self.rows) - len(bad)} as expected, {len(bad)} "
              f"not; {tracebacks} tracebacks, {hangs} hangs; largest peak {peak} MiB")


# ---- data ---------------------------------------------------------------------------------
def good_images(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((28, 28), 60 * (i + 1), np.uint8)).save(folder / f"good{i}.png")


def bad_files(folder: Path) -> dict[str, str]:
    """Write one bad file per case into its own folder beside two good images: case -> how
    the loader should answer ("skipped" or "used")."""
    cases = {}

    def make(name, writer, expect):
        d = folder / name
        good_images(d)
        writer(d)
        cases[name] = expect

    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        png, "PNG")
    make("zero-byte", lambda d: (d / "x.png").write_bytes(b""), "skipped")
    make("truncated", lambda d: (d / "x.png").write_bytes(png.getvalue()[:300]), "skipped")
    make("text-as-image", lambda d: (d / "x.jpg").write_text("hello"), "skipped")
    make("cmyk", lambda d: Image.new("CMYK", (30, 30), (0, 50, 100, 0)).save(d / "x.jpg"),
         "used")
    make("16-bit", lambda d: Image.fromarray(np.full((30, 30), 40000, np.uint16)).save(
        d / "x.png"), "used")
    make("palette+alpha", lambda d: Image.new("P", (30, 30), 1).save(
        d / "x.png", transparency=1), "used")
    make("1x1", lambda d: Image.new("RGB", (1, 1), "red").save(d / "x.png"), "used")
    make("decompression-bomb", lambda d: Image.new("1", (30000, 30000)).save(d / "x.png"),
         "skipped")
    make("symlink-loop", lambda d: (d / "loop").symlink_to(d, target_is_directory=True),
         "ignored")
    make("fifo", lambda d: os.mkfifo(d / "x.png"), "ignored")
    return cases


def traversal_archives(folder: Path) -> list[Path]:
    good = io.BytesIO()
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(good, "PNG")
    data = good.getvalue()
    zpath, tpath = folder / "traversal.zip", folder / "traversal.tar"
    with zipfile.ZipFile(zpath, "w") as z:
        for name in ("a.png", "b.png", "../escape-zip.png", "/tmp/escape-zip-abs.png"):
            z.writestr(name, data)
    with tarfile.open(tpath, "w") as t:
        for name in ("a.png", "b.png", "../escape-tar.png", "/tmp/escape-tar-abs.png"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return [zpath, tpath]


def huge_member_zip(folder: Path) -> Path:
    path = folder / "huge-member.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(2):
            buf = io.BytesIO()
            Image.fromarray(np.full((28, 28), 90 + i, np.uint8)).save(buf, "PNG")
            z.writestr(f"good{i}.png", buf.getvalue())
        with z.open("huge.png", "w", force_zip64=True) as f:
            block = bytes(2**20)
            for _ in range(1024):  # 1 GiB of zeros, ~1 MiB compressed
                f.write(block)
    return path


def run_data(table: Table, work: Path) -> None:
    for name, expect in bad_files(work / "bad").items():
        o = gantool("train", *TINY, "--data", work / "bad" / name, "--steps", "1", "--out",
                    work / "runs", "--name", name, timeout=180)
        if expect == "skipped":
            verdict = success(o, "skipped 1")
        else:
            verdict = success(o, "(3 images)" if expect == "used" else "(2 images)")
            verdict = (verdict[0] and "skipped" not in o.err, verdict[1])
        table.add("data", name, f"train; bad file {expect}", verdict, o)
    for archive in traversal_archives(work):
        o = gantool("train", *TINY, "--data", archive, "--steps", "1", "--out", work / "runs",
                    timeout=180)
        escaped = [p for p in (work.parent / "escape-zip.png", work.parent / "escape-tar.png",
                               Path("/tmp/escape-zip-abs.png"), Path("/tmp/escape-tar-abs.png"))
                   if p.exists()]
        ok, got = success(o)
        table.add("data", f"traversal {archive.suffix}", "train; nothing written outside",
                  (ok and not escaped, got + (f"; ESCAPED {escaped}" if escaped else "")), o)
    o = gantool("train", *TINY, "--data", huge_member_zip(work), "--steps", "1", "--out",
                work / "runs", timeout=180)
    ok, got = success(o, "skipped 1")
    table.add("data", "zip with a 1 GiB member", "member skipped, <1 GiB RSS",
              (ok and o.peak_mib < 1024, got), o)


# ---- arguments and configurations ---------------------------------------------------------
def run_args(table: Table, work: Path, ckpt: Path) -> None:
    yaml = work / "bad.yaml"
    cases = [
        ("truncation=inf", ["train", *TINY, "--data", "builtin:fashion-mnist", "--set",
                            "model.truncation=inf"], "finite"),
        ("truncation=nan", ["train", *TINY, "--data", "builtin:fashion-mnist", "--set",
                            "model.truncation=nan"], "finite"),
        ("lr_g=nan", ["train", *TINY, "--data", "builtin:fashion-mnist", "--set",
                      "train.lr_g=nan"], "finite"),
        ("YAML steps: true", ["train", *TINY, "--data", "builtin:fashion-mnist", "--config",
                              yaml], "expected a number"),
        ("run name a/b", ["train", *TINY, "--data", "builtin:fashion-mnist", "--name",
                          "../a/b"], "plain folder name"),
        ("generate t=1e-9", ["generate", ckpt, "--seeds", "0-3", "--truncation", "1e-9",
                             "--grid", work / "g.png"], "minimum"),
        ("grid of 1e11 seeds", ["generate", ckpt, "--seeds", "0-99999999999", "--grid",
                                work / "g.png"], "too large"),
        ("seeds 9-3", ["generate", ckpt, "--seeds", "9-3", "--grid", work / "g.png"],
         "backwards"),
        ("seed above 2**63-1", ["generate", ckpt, "--seeds", "0-99999999999999999999",
                                "--grid", work / "g.png"], "largest seed"),
        ("unknown preset", ["train", "--preset", "faces64", "--data", "x"], "did you mean"),
    ]
    yaml.write_text("train:\n  steps: true\n")
    for name, args, words in cases:
        o = gantool(*args, timeout=60)
        table.add("args", name, "one-line error", one_line_error(o, words), o)
    # a hundred billion seeds stream: images appear at once, memory stays flat
    out = work / "stream"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "generate", ckpt, "--seeds",
                             "0-99999999999", "--out", out, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while len(list(out.glob("*.png"))) < 200 and time.perf_counter() - start < 120:
        time.sleep(0.2)
    peak = _vm_hwm(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    n = len(list(out.glob("*.png")))
    rows = len((out / "manifest.jsonl").read_text().splitlines())
    o = Outcome(0, "", err.decode(), time.perf_counter() - start, peak)
    table.add("args", "generate 1e11 seeds, Ctrl-C", "streams; every file listed",
              (n >= 200 and rows == n and b"Traceback" not in err,
               f"{n} images, {rows} manifest rows before Ctrl-C"), o)


def _vm_hwm(pid: int) -> float:
    """A running process's peak resident memory so far, MiB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ---- checkpoints --------------------------------------------------------------------------
class RunsCode:
    """Unpickling this would run ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def run_checkpoints(table: Table, work: Path, ckpt: Path) -> None:
    import torch

    state = torch.load(ckpt, weights_only=True)
    narrow = {k: v[..., :1] if v.ndim > 1 else v for k, v in state["G"].items()}
    forged = {
        "no config": {k: v for k, v in state.items() if k != "config"},
        "wrong shapes": {**state, "G": narrow, "G_ema": narrow},
        "config not a mapping": {**state, "config": "x"},
        "bad config values": {**state, "config": {"model": {"resolution": -4}}},
    }
    for name, content in forged.items():
        path = work / f"{name.replace(' ', '-')}.pt"
        torch.save(content, path)
        for command in (["info", path], ["generate", path, "--grid", work / "g.png"]):
            o = gantool(*command, timeout=60)
            table.add("checkpoints", f"{name}: {command[0]}", "one-line error",
                      one_line_error(o), o)
    marker = work / "PWNED"
    evil = work / "evil.pt"
    torch.save({"format": "gantool-checkpoint-v1", "config": RunsCode(marker)}, evil)
    for command in (["info", evil], ["generate", evil, "--grid", work / "g.png"],
                    ["train", "--resume", evil]):
        o = gantool(*command, timeout=60)
        ok, got = one_line_error(o)
        table.add("checkpoints", f"code in the pickle: {command[0]}", "refused, code not run",
                  (ok and not marker.exists(), got + ("; CODE RAN" if marker.exists() else "")),
                  o)


# ---- kills --------------------------------------------------------------------------------
def run_kills(table: Table, work: Path, kills: int = 20) -> None:
    import torch

    rng = random.Random(0)
    args = [*TINY, "--data", "builtin:fashion-mnist", "--ngf", "64", "--checkpoint-every", "1",
            "--set", "train.keep=2", "--sample-every", "1000"]
    steps = 400
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "train", *args, "--steps",
                             str(steps), "--out", work / "kills"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    start, unreadable, resumed = time.perf_counter(), 0, 0
    while not list((work / "kills").glob("*/checkpoints/step-*.pt")):  # a run to resume
        assert proc.poll() is None and time.perf_counter() - start < 300, "training did not start"
        time.sleep(0.1)
    run_dir = next((work / "kills").iterdir())
    for _ in range(kills):
        time.sleep(rng.uniform(1.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for p in (run_dir / "checkpoints").glob("*.pt"):
            try:
                torch.load(p, weights_only=True)
            except Exception:  # noqa: BLE001 - counted
                unreadable += 1
        proc = subprocess.Popen([sys.executable, "-m", "gantool", "train", "--resume", run_dir],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        resumed += 1
    _, err = proc.communicate(timeout=600)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
    rows = [row["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "event" not in (row := json.loads(x))]
    finished = proc.returncode == 0 or (  # an earlier resume may have reached the end
        proc.returncode == 2 and f"already reached step {steps}" in err.decode())
    ok = finished and unreadable == 0 and last == steps and rows == sorted(set(rows))
    o = Outcome(proc.returncode, "", err.decode(), time.perf_counter() - start, 0)
    table.add("kills", f"{kills} SIGKILLs + resumes", "readable; ends at the last step",
              (ok, f"exit {proc.returncode}, {unreadable} unreadable checkpoints, last step "
                   f"{last}/{steps}, "
                   f"{len(rows)} metric rows, {'no ' if rows == sorted(set(rows)) else ''}"
                   "duplicates"), o)


# ---- outputs: races, SIGTERM, unwritable paths ---------------------------------------------
def started(*args, cwd: Path | None = None) -> subprocess.Popen:
    """``gantool ARGS`` in its own process group (as a job of Slurm or Kubernetes is)."""
    return subprocess.Popen([sys.executable, "-m", "gantool", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            start_new_session=True)


def wait_for(folder: Path, pattern: str, count: int, proc: subprocess.Popen,
             timeout: float = 120) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and proc.poll() is None:
        if len(list(folder.glob(pattern))) >= count:
            return True
        time.sleep(0.05)
    return False


def stopped(proc: subprocess.Popen, sig: int, whole_job: bool = True,
            timeout: float = 60) -> Outcome:
    """Send ``sig`` (to every process of the job), and what the process said and did."""
    start = time.perf_counter()
    peak = _vm_hwm(proc.pid)
    if whole_job:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    return Outcome(code, out, err, time.perf_counter() - start, peak)


def children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def folder_state(folder: Path, suffix: str) -> tuple[bool, str]:
    """Every image listed once in the manifest, every row an image, no temp file left."""
    files = sorted(p.name for p in folder.glob(f"*.{suffix}"))
    manifest = folder / "manifest.jsonl"
    rows = [json.loads(x)["file"] for x in manifest.read_text().splitlines()] \
        if manifest.is_file() else []
    temps = [p for p in os.listdir(folder) if p.endswith(".tmp")]
    duplicates = len(rows) - len(set(rows))
    unlisted = len(set(files) - set(rows))
    phantom = len(set(rows) - set(files))
    ok = not duplicates and not unlisted and not phantom and not temps and files
    return bool(ok), (f"{len(files)} files, {len(rows)} rows: {duplicates} duplicate, "
                      f"{unlisted} unlisted, {phantom} without a file, {len(temps)} temp")


def leftovers(pid: int, workers: set[int]) -> str:
    """Worker processes still alive and shared-memory segments of ``pid`` (after a 10 s grace
    for workers to drain their queue)."""
    deadline = time.perf_counter() + 10
    while [w for w in workers if Path(f"/proc/{w}").exists()] and \
            time.perf_counter() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    shm = [p for p in os.listdir("/dev/shm") if p.startswith(f"gantool-{pid}-")]
    return ", ".join(x for x in (f"{len(alive)} orphan processes" if alive else "",
                                 f"{len(shm)} /dev/shm segments" if shm else "") if x)


def run_outputs(table: Table, work: Path, ckpt: Path) -> None:
    # two renders into one folder: the second is refused at once, the first's record is whole
    for name, second in (("same settings", []), ("truncation 0.5 vs none", ["--truncation",
                                                                            "0.5"])):
        out = work / f"race-{len(second)}"
        first = started("generate", ckpt, "--seeds", "0-99999", "--out", out,
                        "--no-progress")
        wait_for(out, "*.png", 20, first)
        o = gantool("generate", ckpt, "--seeds", "0-99999", "--out", out, "--no-progress",
                    *second, timeout=60)
        ok, got = one_line_error(o, "another gantool process")
        stop = stopped(first, signal.SIGINT, whole_job=False)
        whole, state = folder_state(out, "png")
        table.add("outputs", f"two generates, one folder ({name})",
                  "second refused; record whole", (ok and whole and stop.code == 130,
                                                   f"{got}; first: {state}"), o)
    # SIGTERM to the whole job of a render with process writers, three times
    for attempt in range(3):
        out = work / f"term-{attempt}"
        proc = started("generate", ckpt, "--seeds", "0-199999", "--out", out, "--format",
                       "jpg", "--workers", "2", "--no-progress")
        wait_for(out, "*.jpg", 50 + 100 * attempt, proc)
        workers = children(proc.pid)
        o = stopped(proc, signal.SIGTERM)
        last = (o.err.strip().splitlines() or [""])[-1]
        whole, state = folder_state(out, "jpg")
        left = leftovers(proc.pid, workers)
        ok = (o.code == 143 and last.startswith("terminated (SIGTERM); the files written are "
                                                "whole") and "Traceback" not in o.err
              and whole and not left and len(workers) >= 2)
        table.add("outputs", f"SIGTERM job, jpg process writers #{attempt + 1}",
                  "143; all listed; no orphans", (ok, f"{_got(o, last[:40])}; {state}"
                                                  + (f"; {left}" if left else "")), o)
    # SIGTERM to a video being encoded
    out = work / "video"
    out.mkdir()
    proc = started("video", ckpt, "--seeds", "0-399", "--frames-per-seed", "30", "--out",
                   out / "walk.mp4", "--no-progress")
    wait_for(out, ".walk.*.tmp.mp4", 1, proc)
    time.sleep(0.5)
    o = stopped(proc, signal.SIGTERM)
    left = sorted(p.name for p in out.iterdir())
    table.add("outputs", "SIGTERM job, video --out x.mp4", "143; no file, no temp",
              (o.code == 143 and o.err.strip().endswith("terminated (SIGTERM)") and not left,
               _got(o, o.err.strip()[-40:]) + (f"; left {left}" if left else "")), o)
    # output paths that cannot be written: one line, before the work
    afile = work / "afile"
    afile.write_text("x")
    for name, args, words in (
            ("generate --outdir under a file", ["generate", ckpt, "--seeds", "0-3", "--out",
                                                afile / "g"], "a part of that path is a file"),
            ("generate --grid in /proc", ["generate", ckpt, "--seeds", "0-3", "--grid",
                                          "/proc/g.png"], "cannot write /proc"),
            ("train --out under a file", ["train", *TINY, "--data", "builtin:fashion-mnist",
                                          "--steps", "1", "--out", afile / "r"], "a part of"),
            ("eval --json under a file", ["eval", ckpt, "--num", "8", "--json",
                                          afile / "r.json"], "a part of that path is a file"),
            ("video --frames-dir under a file", ["video", ckpt, "--seeds", "0-1",
                                                 "--frames-dir", afile / "f"], "a part of"),
            ("export --out in /sys", ["export", ckpt, "--out", "/sys/e"], "cannot write"),
            ("render --timeout -1", ["render", "--url", "localhost:1", "--seeds", "0", "--out",
                                     work / "r", "--timeout", "-1"], "positive number"),
            ("render --timeout nan", ["render", "--url", "localhost:1", "--seeds", "0",
                                      "--out", work / "r", "--timeout", "nan"], "positive"),
            ("render --retry-for nan", ["render", "--url", "localhost:1", "--seeds", "0",
                                        "--out", work / "r", "--retry-for", "nan"], "positive"),
    ):
        o = gantool(*args, timeout=120)
        table.add("outputs", name, "one-line error", one_line_error(o, words), o)
    o = gantool("generate", ckpt, "--seeds", "0-15", "--batch-size", "1000000000", "--out",
                work / "huge-batch", "--format", "webp", "--no-progress", timeout=120)
    table.add("outputs", "--batch-size 1e9, thread writer", "16 images (batch capped)",
              success(o, "16 image"), o)
    one = work / "one-image"
    good_images(one, 1)
    o = gantool("eval", ckpt, "--data", one, "--num", "8", timeout=300)
    table.add("outputs", "eval against a folder of 1 image", "one-line error",
              one_line_error(o), o)


# ---- folders: what drew them, merges, empty shards, stop windows ---------------------------
def other_model(ckpt: Path, work: Path) -> Path:
    """``ckpt`` with one weight changed: another model of the same architecture."""
    import torch

    state = torch.load(ckpt, weights_only=True)
    for key in ("G", "G_ema"):
        if state.get(key) is not None:
            name = next(k for k, v in state[key].items() if v.is_floating_point())
            state[key][name] = state[key][name] + 0.5
    path = work / "other-model.pt"
    torch.save(state, path)
    return path


def manifest_state(out: Path) -> tuple[bool, str]:
    """Every row of ``out``'s manifest names a file (or tar member) that is there, once, and
    every image file or tar sample is listed; all rows name one model and one format."""
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()] \
        if (out / "manifest.jsonl").is_file() else []
    keys = [(r["file"], r.get("member")) for r in rows]
    on_disk = {(p.name, None) for p in out.iterdir() if p.suffix in (".png", ".jpg")}
    for tar in out.glob("*.tar"):
        with tarfile.open(tar) as t:
            on_disk |= {(tar.name, m) for m in t.getnames() if not m.endswith(".json")}
    models = {(r.get("weights_sha256"), r.get("format")) for r in rows}
    bad = (len(keys) != len(set(keys)), set(keys) - on_disk, on_disk - set(keys), len(models) > 1)
    return not any(bad), (f"{len(rows)} rows, {len(on_disk)} images: {len(keys) - len(set(keys))} "
                          f"duplicate, {len(bad[1])} without an image, {len(bad[2])} unlisted, "
                          f"{len(models)} model/format")


def run_folders(table: Table, work: Path, ckpt: Path) -> None:
    other = other_model(ckpt, work)
    tars = ["--layout", "webdataset", "--tar-images", "4"]
    for name, first, second, words in (
            ("resume with another checkpoint", [ckpt], [other], "rendered with model"),
            ("resume png folder as jpg", [ckpt], [ckpt, "--format", "jpg"], "format png, not"),
            ("resume with --no-ema", [ckpt], [ckpt, "--no-ema"], "rendered with model"),
            ("resume flat folder as subdirs", [ckpt], [ckpt, "--layout", "subdirs"], "layout"),
            ("webdataset re-run as jpg", [ckpt, *tars], [ckpt, *tars, "--format", "jpg"],
             "format png, not"),
            ("webdataset re-run, another model", [ckpt, *tars], [other, *tars], "with model")):
        out = work / f"mix-{name.replace(' ', '-')}"
        gantool("generate", first[0], "--seeds", "0-9", "--out", out, "--no-progress",
                *first[1:], timeout=120)
        o = gantool("generate", second[0], "--seeds", "0-9", "--out", out, "--no-progress",
                    *second[1:], timeout=120)
        ok, got = one_line_error(o, words)
        whole, state = manifest_state(out)
        table.add("folders", name, "refused; folder unchanged", (ok and whole, f"{got}; {state}"),
                  o)
    run_merges(table, work, ckpt, other)
    run_tar_kills(table, work, ckpt)


def run_merges(table: Table, work: Path, ckpt: Path, other: Path) -> None:
    def shards(out, seeds, count, *extra, models=None):
        for i in range(count):
            gantool("generate", (models or [ckpt] * count)[i], "--seeds", seeds, "--out", out,
                    "--shard", f"{i}/{count}", "--no-progress", *extra, timeout=120)
        return gantool("merge-shards", out, timeout=120)

    o = shards(work / "m-models", "0-9", 2, models=[ckpt, other])
    table.add("folders", "merge shards of two models", "one-line error",
              one_line_error(o, "rendered with model"), o)
    (work / "m-formats2").mkdir()
    for i, fmt in enumerate(("png", "jpg")):
        gantool("generate", ckpt, "--seeds", "0-9", "--out", work / "m-formats2", "--shard",
                f"{i}/2", "--format", fmt, "--no-progress", timeout=120)
    o = gantool("merge-shards", work / "m-formats2", timeout=60)
    table.add("folders", "merge shards of two formats", "one-line error",
              one_line_error(o, "rendered with format"), o)
    out = work / "m-escape"
    shards(out, "0-9", 2)
    (out / "manifest.jsonl").unlink()  # merged once; the merge of the tampered shard writes none
    shard = out / "shard-00001-of-00002"
    text = (shard / "manifest.jsonl").read_text()
    for name in ("../../../../etc/hostname", "/etc/hostname"):
        row = {**json.loads(text.splitlines()[0]), "file": name}
        (shard / "manifest.jsonl").write_text(json.dumps(row) + "\n" + text)
        o = gantool("merge-shards", out, timeout=60)
        ok, got = one_line_error(o, "not in its shard folder")
        table.add("folders", f"merge: a row naming {name[:16]}", "one-line error; no index",
                  (ok and not (out / "manifest.jsonl").exists(), got), o)
    out = work / "m-cut-tar"
    shards(out, "0-9", 2, "--layout", "webdataset", "--tar-images", "5")
    tar = out / "shard-00000-of-00002" / "000000.tar"
    with tarfile.open(tar) as t:
        cut = t.getmembers()[2].offset  # after its first sample
    tar.write_bytes(tar.read_bytes()[:cut])
    o = gantool("merge-shards", out, timeout=60)
    table.add("folders", "merge: a tar cut to one sample", "one-line error",
              one_line_error(o, "is not in the tar"), o)
    for name, seeds, count, layout in (("3 seeds in 5 shards", "0-2", 5, "flat"),
                                       ("3 seeds in 5 tar shards", "0-2", 5, "webdataset")):
        out = work / f"m-empty-{layout}"
        o = shards(out, seeds, count, "--layout", layout)
        ok, got = success(o, "3 image")
        table.add("folders", name, "merged: 3 images", (ok, got), o)
    for devices, seeds, n in (("cpu,cpu", "7", 1), ("cpu", "0-3", 4)):
        out = work / f"dev-{devices}"
        o = gantool("generate", ckpt, "--seeds", seeds, "--out", out, "--devices", devices,
                    "--no-progress", timeout=300)
        ok, got = success(o, f"{n} image(s)")
        whole, state = manifest_state(out) if devices == "cpu" else (True, "")
        table.add("folders", f"--devices {devices}, {n} seed(s)", "rendered and listed",
                  (ok and whole, f"{got} {state}"), o)


def run_tar_kills(table: Table, work: Path, ckpt: Path, kills: int = 12) -> None:
    """A webdataset render SIGKILLed at random moments, resumed after each: every sample of
    every tar listed once, none lost."""
    rng = random.Random(1)
    out = work / "tar-kills"
    args = ["generate", ckpt, "--seeds", "0-4999", "--out", out, "--layout", "webdataset",
            "--tar-images", "20", "--batch-size", "4", "--no-progress"]
    start = time.perf_counter()
    for _ in range(kills):
        proc = started(*args)
        time.sleep(rng.uniform(1.5, 4.0))  # past the imports, into the render
        stopped(proc, signal.SIGKILL)
    o = gantool(*args, timeout=300)
    o.seconds = time.perf_counter() - start
    whole, state = manifest_state(out)
    ok, got = success(o)
    table.add("folders", f"webdataset: {kills} SIGKILLs + resume", "5000 listed once",
              (ok and whole and state.startswith("5000 rows"), f"{got}; {state}"), o)
    lines = (out / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    (out / "manifest.jsonl").write_bytes(b"".join(lines[:-30]) + lines[-30][:15])
    o = gantool(*args, timeout=300)
    whole, state = manifest_state(out)
    table.add("folders", "webdataset: rows of a linked tar lost", "relisted from the tar",
              (success(o)[0] and whole and state.startswith("5000 rows"), state), o)


# ---- records ------------------------------------------------------------------------------
# Records gantool writes and reads back, each key given a value of the wrong kind: export.json,
# a plan's .plan.json sidecar, the ONNX model's metadata, a run's config.json, session.json and
# metrics.jsonl, a bench baseline, a config file. A one-line error naming the file and the key,
# or, where the reader is lenient on purpose (report, resume), the damage skipped and counted.


def _edit_json(path: Path, change) -> None:
    """Rewrite the JSON file ``path`` as ``change(its value)`` returns it (bytes: as they are)."""
    value = change(json.loads(path.read_text()))
    path.write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())


def _with_hash(key: str, value):
    def change(record):
        entry = record["hashes"]["model.onnx"]
        record["hashes"]["model.onnx"] = {**entry, key: value}
        return record
    return change


EXPORT_JSON_CASES = [  # (case, change, command, words)
    ("hashes a string", lambda r: {**r, "hashes": "abc"}, "verify",
     "export.json: key hashes is a string"),
    ("hashes a list", lambda r: {**r, "hashes": ["model.onnx"]}, "generate",
     "export.json: key hashes is a list"),
    ("hashes null", lambda r: {**r, "hashes": None}, "verify", "export.json: key hashes is null"),
    ("a hash a number", lambda r: {**r, "hashes": {"model.onnx": 5}}, "generate",
     "key hashes['model.onnx'] is a number"),
    ("size a number as string", _with_hash("bytes", "327947"), "verify",
     "key hashes['model.onnx']['bytes'] is a string"),
    ("size negative", _with_hash("bytes", -1), "generate",
     "key hashes['model.onnx']['bytes'] is a number (-1), not a whole number >= 0"),
    ("sha256 an object", _with_hash("sha256", {"a": 1}), "verify",
     "key hashes['model.onnx']['sha256'] is an object"),
    ("metadata a list", lambda r: {**r, "metadata": ["x"]}, "generate",
     "export.json: key metadata is a list"),
    ("a hash naming ../x", lambda r: {**r, "hashes": {**r["hashes"], "../x": {"bytes": 1,
                                                                               "sha256": "0"}}},
     "verify", "key hashes names '../x'"),
    ("not an object", lambda r: [r], "verify", "export.json holds a list, not an object"),
    ("not JSON", lambda r: b'{"hashes": ', "generate", "export.json is not valid JSON"),
    ("not UTF-8", lambda r: b'{"hashes": "\xff"}', "verify", "export.json is not valid JSON"),
]


def _records_exports(table: Table, work: Path, out: Path) -> None:
    for case, change, command, words in EXPORT_JSON_CASES:
        folder = work / "rec-export"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(out, folder)
        _edit_json(folder / "export.json", change)
        args = (["info", folder, "--verify"] if command == "verify" else
                ["generate", folder, "--backend", "onnx", "--seeds", "0", "--grid",
                 work / "rec.png"])
        o = gantool(*args, timeout=120)
        table.add("records", f"export.json {case}: {command}", "one line: file, key",
                  one_line_error(o, words), o)


PLAN_CASES = [  # (case, change of a good sidecar, words)
    ("not an object", lambda s: [s], "model.plan.json holds a list"),
    ("metadata a string", lambda s: {**s, "metadata": "abc"}, "key metadata is a string"),
    ("metadata missing", lambda s: {k: v for k, v in s.items() if k != "metadata"},
     "key metadata is missing"),
    ("a metadata value a number",
     lambda s: {**s, "metadata": {**s["metadata"], "gantool.nz": 100}},
     "key metadata['gantool.nz'] is a number (100), not a string"),
    ("profile max negative", lambda s: {**s, "profile": {"z": {"max": [-64, 100]}}},
     "key profile['z']['max'][0] is a number (-64)"),
]


def _records_plans(table: Table, work: Path, out: Path) -> None:
    metadata = json.loads((out / "export.json").read_text())["metadata"]
    good = {"built_by": "deploy/build_engine.sh", "metadata": metadata,
            "profile": {"z": {"min": [1, 100], "opt": [8, 100], "max": [64, 100]}}}
    folder = work / "rec-plan"
    folder.mkdir(exist_ok=True)
    (folder / "model.plan").write_bytes(b"a plan as trtexec writes it")
    for case, change, words in PLAN_CASES:
        (folder / "model.plan.json").write_text(json.dumps(change(json.loads(json.dumps(good)))))
        o = gantool("info", folder / "model.plan", timeout=120)
        table.add("records", f"model.plan.json {case}: info", "one line: file, key",
                  one_line_error(o, words), o)


METADATA_CASES = [  # (key, value, command, words)
    ("nz", "abc", "generate", "gantool.nz is 'abc', not a whole number >= 1"),
    ("nz", "-5", "info", "gantool.nz is '-5', not a whole number >= 1"),
    ("resolution", "0", "generate", "gantool.resolution is '0'"),
    ("truncation", "nan", "generate", "gantool.truncation: truncation must be a positive"),
    ("prior", "abc", "info", "gantool.prior is 'abc', not one of normal, uniform, stylegan"),
    ("classes", "5", "info", "gantool.classes is '5', not a JSON list of class names"),
    ("train_step", "-4", "info", "gantool.train_step is '-4'"),
]


def _records_metadata(table: Table, work: Path, out: Path) -> None:
    import onnx

    clean = onnx.load(str(out / "model.onnx"))
    folder = work / "rec-bare"  # a model without its export.json: its metadata is all it says
    folder.mkdir(exist_ok=True)
    for key, value, command, words in METADATA_CASES:
        model = onnx.ModelProto()
        model.CopyFrom(clean)
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in clean.metadata_props},
                                            f"gantool.{key}": value})
        onnx.save(model, str(folder / "model.onnx"))
        args = (["info", folder / "model.onnx"] if command == "info" else
                ["generate", folder / "model.onnx", "--backend", "onnx", "--seeds", "0",
                 "--grid", work / "rec.png"])
        o = gantool(*args, timeout=120)
        table.add("records", f"ONNX metadata {key}={value!r}: {command}", "one line: file, key",
                  one_line_error(o, words), o)


RUN_CASES = [  # (case, file, bytes appended (metrics.jsonl) or written, words in the output)
    ("config.json a list", "config.json", b"[1]", "wrote"),
    ("config.json not UTF-8", "config.json", b'\xff{"train": {}}', "wrote"),
    ("config.json sections wrong", "config.json", b'{"train": "x", "model": ["x"]}', "wrote"),
    ("session.json values wrong", "session.json", b'{"device": ["x"], "processes": "abc"}',
     "wrote"),
    ("session.json null", "session.json", b"null", "wrote"),
    ("metrics row event a list", "metrics.jsonl", b'{"step": 1, "event": ["rollback"]}\n',
     "skipped 1 damaged line"),
    ("metrics row loss a 400-digit int", "metrics.jsonl",
     b'{"step": 1, "loss_d": 1' + b"0" * 400 + b"}\n", "skipped 1 damaged line"),
    ("metrics row step a string", "metrics.jsonl", b'{"step": "3", "loss_d": 1.0}\n',
     "skipped 1 damaged line"),
    ("metrics row nested 100,000 deep", "metrics.jsonl", b"[" * 100000 + b"\n",
     "skipped 1 damaged line"),
    ("metrics row not an object", "metrics.jsonl", b'["step", 1]\n', "skipped 1 damaged line"),
    ("metrics eval rows: fid, kid, none", "metrics.jsonl",
     b'{"step": 1, "event": "eval", "fid": 30.5}\n{"step": 2, "event": "eval", "kid": 0.1}\n'
     b'{"step": 2, "event": "eval"}\n', "wrote"),
]


def _records_runs(table: Table, work: Path) -> None:
    o = gantool("train", *TINY, "--data", "builtin:fashion-mnist", "--steps", "2", "--out",
                work / "rec-runs", timeout=300)
    if o.code != 0:
        table.add("records", "train a run", "trained", success(o), o)
        return
    run_dir = next((work / "rec-runs").iterdir())
    for case, name, data, words in RUN_CASES:
        copy = work / "rec-run"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
        path = copy / name
        path.write_bytes((path.read_bytes() if name == "metrics.jsonl" else b"") + data)
        o = gantool("report", copy, timeout=300)
        table.add("records", f"report: {case}", "report; damage skipped", success(o, words), o)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b'{"step": 1, "event": {"a": 1}}\n'
                        + b'{"step": 1, "loss_g": null}\n' + b"[" * 100000 + b"\n")
    o = gantool("train", "--resume", run_dir, "--steps", "3", "--no-progress", timeout=300)
    table.add("records", "resume over 3 rows of the wrong kind", "resumes; dropped 3",
              success(o, "dropped 3 damaged line(s)"), o)


OTHER_CASES = [  # (case, file name, bytes, argv before the file, words)
    ("bench baseline a list", "base.json", b"[1]", ["bench", "--compare"],
     "base.json holds a list, not an object"),
    ("bench baseline resolution \"28\"", "base.json",
     b'{"rows": [{"backend": "torch", "resolution": "28", "batch": 1}]}', ["bench", "--compare"],
     "key rows[0]['resolution'] is a string"),
    ("bench baseline images/s NaN", "base.json",
     b'{"rows": [{"backend": "torch", "resolution": 28, "batch": 1, "images_per_s": NaN}]}',
     ["bench", "--compare"], "key rows[0]['images_per_s'] is a number (NaN)"),
    ("config file not UTF-8", "conf.json", b'\xff{"train": {}}', ["train", "--config"],
     "cannot parse config file"),
]


def _records_others(table: Table, work: Path) -> None:
    for case, name, data, argv, words in OTHER_CASES:
        (work / name).write_bytes(data)
        o = gantool(*argv, work / name, timeout=120)
        table.add("records", case, "one line: file, key", one_line_error(o, words), o)


def _records_shard(table: Table, work: Path, ckpt: Path) -> None:
    shard = work / "rec-shards" / "shard-00001-of-00002"  # --shard 1/2's folder
    shard.mkdir(parents=True)
    (shard / "shard.json").write_bytes(b"[" * 100000)
    o = gantool("generate", ckpt, "--seeds", "0-3", "--out", work / "rec-shards", "--shard",
                "1/2", timeout=120)
    table.add("records", "shard.json nested 100,000 deep: generate --shard", "one-line error",
              one_line_error(o, str(shard)), o)


def run_records(table: Table, work: Path, ckpt: Path) -> None:
    _records_others(table, work)
    _records_shard(table, work, ckpt)
    _records_runs(table, work)
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        table.add("records", "exports", "skipped", (True, f"no onnx extra ({e})"))
        return
    out = work / "rec-export-clean"
    o = gantool("export", ckpt, "--out", out, timeout=300)
    if o.code != 0:
        table.add("records", "export", "exported", success(o), o)
        return
    _records_exports(table, work, out)
    _records_plans(table, work, out)
    _records_metadata(table, work, out)


# ---- stops: a signal while training writes the checkpoint of a stop -------------------------

# A checkpoint of about 100 MB (G, G_ema, D, two Adams): its save takes a while, a step does not.
SLOW_SAVE = [*TINY, "--data", "builtin:fashion-mnist", "--ngf", "256", "--ndf", "16",
             "--checkpoint-every", "100000", "--sample-every", "100000", "--name", "stops"]


def writing_into(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` holds a file open in ``folder`` that has no final name yet (an
    unnamed O_TMPFILE shows as "#inode (deleted)", a named one ends in .tmp)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)) and target.endswith((" (deleted)", ".tmp")):
            return True
    return False


def frozen_mid_save(proc: subprocess.Popen, ckpts: Path, timeout: float = 300) -> bool:
    """Wait for a checkpoint write of ``proc`` and stop the process inside it (SIGSTOP): True
    when it is frozen mid-save; False (and running) when it ended or the save did first."""
    deadline = time.perf_counter() + timeout
    while not writing_into(proc.pid, ckpts):
        if proc.poll() is not None or time.perf_counter() > deadline:
            return False
        time.sleep(0.0005)
    proc.send_signal(signal.SIGSTOP)
    time.sleep(0.05)  # stopped for sure
    if writing_into(proc.pid, ckpts):
        return True
    proc.send_signal(signal.SIGCONT)
    return False


def checkpoint_files(ckpts: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """(every readable .pt -> its step, the unreadable ones, temp files left)."""
    import torch

    steps, unreadable = {}, []
    for p in sorted(ckpts.glob("*.pt")):
        try:
            steps[p.name] = int(torch.load(p, weights_only=True)["step"])
        except Exception:  # noqa: BLE001 - counted
            unreadable.append(p.name)
    temps = [n for n in os.listdir(ckpts) if n.endswith(".tmp")] if ckpts.is_dir() else []
    return steps, unreadable, temps


def trained_to(run_dir: Path) -> int:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return max((r["step"] for r in rows if "event" not in r), default=0)


def stop_verdict(o: Outcome, run_dir: Path, code: int, last: int,
                 said: str) -> tuple[bool, str]:
    """Exit ``code``, ``said`` on stderr, last.pt at step ``last``, every checkpoint readable,
    no temp file, no traceback."""
    steps, unreadable, temps = checkpoint_files(run_dir / "checkpoints")
    got = steps.get("last.pt")
    ok = (o.code == code and "Traceback" not in o.err and said in o.err and got == last
          and not unreadable and not temps)
    lines = o.err.strip().splitlines() or [""]
    return ok, (f"exit {o.code}: {next((x for x in lines if said in x), lines[-1])[:70]}; "
                f"last.pt step {got} of {last}; {len(steps)} readable, {len(unreadable)} "
                f"unreadable, {len(temps)} temp" + ("; TRACEBACK" if "Traceback" in o.err else ""))


def run_stops(table: Table, work: Path) -> None:
    """A signal that lands while training writes its checkpoint at a stop: the save finishes,
    says so, exit 130/143, last.pt at the last step; a second Ctrl-C aborts it, the checkpoint
    before intact. The moment is frozen (SIGSTOP) while the file is open, so no timing luck."""
    cases = [("SIGINT mid-save at --max-time", ["--steps", "100000", "--max-time", "15s"],
              signal.SIGINT, 130, "press Ctrl-C again"),
             ("SIGINT mid-save at the last step", ["--steps", "4"], signal.SIGINT, 130,
              "press Ctrl-C again"),
             ("SIGTERM job mid-save at --max-time", ["--steps", "100000", "--max-time", "15s"],
              signal.SIGTERM, 143, "send SIGTERM again")]
    for i, (case, args, sig, code, again) in enumerate(cases):
        run_dir = work / f"stops-{i}" / "00001-stops"
        proc = started("train", *SLOW_SAVE, *args, "--out", run_dir.parent)
        caught = frozen_mid_save(proc, run_dir / "checkpoints")
        if caught:
            os.killpg(proc.pid, sig)  # while frozen: handled inside the save
        o = stopped(proc, signal.SIGCONT if caught else sig, whole_job=True, timeout=300)
        step = trained_to(run_dir)
        ok, got = stop_verdict(o, run_dir, code, step,
                               f"finishing the checkpoint at step {step}; {again} to abort it")
        table.add("stops", case, f"{code}; says so; last.pt at the last step",
                  (ok and caught, got if caught else f"save never caught; {got}"), o)
    run_two_ctrl_cs(table, work)


def run_two_ctrl_cs(table: Table, work: Path) -> None:
    """Ctrl-C mid-save, then Ctrl-C again once it said it finishes: the save is aborted, last.pt
    stays at the checkpoint before it."""
    import threading

    run_dir = work / "stops-2x" / "00001-stops"
    start = time.perf_counter()
    proc = started("train", *SLOW_SAVE, "--steps", "6", "--checkpoint-every", "3", "--set",
                   "train.keep=2", "--out", run_dir.parent)
    lines: list[str] = []
    def read():
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not (run_dir / "checkpoints" / "last.pt").exists() and proc.poll() is None:
        time.sleep(0.01)  # step 3's checkpoint; the next save is step 6's
    caught = [frozen_mid_save(proc, run_dir / "checkpoints")]
    if caught[0]:
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        while proc.poll() is None and not any("finishing" in x for x in lines):
            time.sleep(0.001)
        caught.append(frozen_mid_save(proc, run_dir / "checkpoints", timeout=5))
        if caught[-1]:
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGCONT)
    out = proc.stdout.read()
    code = proc.wait(timeout=300)
    reader.join(timeout=10)
    o = Outcome(code, out, "".join(lines), time.perf_counter() - start, 0.0)
    ok, got = stop_verdict(o, run_dir, 130, 3, "aborted the checkpoint at step 6")
    table.add("stops", "two SIGINTs mid-save (last step)", "130; checkpoint before intact",
              (ok and all(caught) and len(caught) == 2,
               got if all(caught) else f"save never caught ({caught}); {got}"), o)


# ---- engines: a job's environment, Ray's connection and stops (issue 39, class 5) -----------

JOB_VARIABLES = ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                 "JOB_COMPLETION_INDEX", "GANTOOL_SHARDS", "RAY_ADDRESS")


@contextlib.contextmanager
def job_environment(**values: str):
    """The harness's environment (which ``gantool`` passes on) with only ``values`` of the
    job variables set, as a scheduler would set them; restored after."""
    saved = {k: os.environ.get(k) for k in JOB_VARIABLES}
    for k in JOB_VARIABLES:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_engines(table: Table, work: Path, ckpt: Path) -> None:
    for name, values, words in (
            ("JOB_COMPLETION_INDEX, no GANTOOL_SHARDS", {"JOB_COMPLETION_INDEX": "1"},
             "GANTOOL_SHARDS is not"),
            ("GANTOOL_SHARDS, no JOB_COMPLETION_INDEX", {"GANTOOL_SHARDS": "8"},
             "JOB_COMPLETION_INDEX is not"),
            ("SLURM_ARRAY_TASK_ID, no _COUNT", {"SLURM_ARRAY_TASK_ID": "3"},
             "SLURM_ARRAY_TASK_COUNT is not"),
            ("RANK, no WORLD_SIZE", {"RANK": "1"}, "WORLD_SIZE is not")):
        out = work / f"env-{len(table.rows)}"
        with job_environment(**values):
            o = gantool("generate", ckpt, "--seeds", "0-9", "--out", out, "--no-progress",
                        timeout=120)
        ok, got = one_line_error(o, words)
        table.add("engines", f"env {name}", "one-line error, nothing drawn",
                  (ok and not out.exists(), got), o)
    with job_environment(RANK="0", WORLD_SIZE="1"):  # a plain single-process torchrun
        o = gantool("generate", ckpt, "--seeds", "0-3", "--out", work / "env-torchrun",
                    "--no-progress", timeout=120)
    table.add("engines", "env RANK=0 WORLD_SIZE=1", "the whole list", success(o, "wrote 4"), o)
    for name, values, engine in (
            ("--devices cpu,cpu in a Slurm array task",
             {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, ["--devices", "cpu,cpu"]),
            ("--engine ray in a Kubernetes Indexed Job",
             {"JOB_COMPLETION_INDEX": "2", "GANTOOL_SHARDS": "8"}, ["--engine", "ray"])):
        out = work / f"env-{len(table.rows)}"
        with job_environment(**values):  # each process of the job would draw every seed
            o = gantool("generate", ckpt, "--seeds", "0-9", "--out", out, *engine,
                        "--no-progress", timeout=120)
        ok, got = one_line_error(o, "splits the whole seed list")
        table.add("engines", name, "one-line error, nothing drawn", (ok and not out.exists(), got),
                  o)
    run_ray_addresses(table, work, ckpt)
    for name, sig, whole in (("SIGTERM to the Ray driver", signal.SIGTERM, False),
                             ("SIGTERM to the whole Ray job", signal.SIGTERM, True),
                             ("Ctrl-C to the whole Ray job", signal.SIGINT, True)):
        ray_stop(table, work, ckpt, name, sig, whole)


def run_ray_addresses(table: Table, work: Path, ckpt: Path) -> None:
    """--address where no cluster answers: one line within a bounded time, not a traceback or
    endless retries; actors no node can hold: one line, not an endless wait."""
    for address, words in (("auto", "no Ray cluster runs on this machine"),
                           ("localhost:1", "no Ray cluster answers there"),
                           ("10.255.255.1:6379", "no Ray cluster answers there")):
        with job_environment():
            o = gantool("generate", ckpt, "--seeds", "0-3", "--out", work / "ray-addr",
                        "--engine", "ray", "--address", address, "--no-progress", timeout=90)
        ok, got = one_line_error(o, words)
        table.add("engines", f"ray --address {address}, no cluster", "one line within 90 s",
                  (ok and len(o.err.strip().splitlines()) == 1, got), o)
    o = gantool("generate", ckpt, "--seeds", "0-3", "--out", work / "ray-cpus", "--engine",
                "ray", "--actor-cpus", "64", "--no-progress", timeout=120)
    table.add("engines", "ray --actor-cpus 64 on this machine", "one-line error",
              one_line_error(o, "--actor-cpus 64"), o)


def _gantool_shm() -> set[str]:
    return {p for p in os.listdir("/dev/shm") if p.startswith("gantool-")}


def _processes_of(out: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if str(out) in line and "gantool" in line]


def ray_stop(table: Table, work: Path, ckpt: Path, name: str, sig: int, whole: bool) -> None:
    """A stop of a Ray render as of any render: its exit code and line, every whole file of
    every shard listed, no /dev/shm segment and no render process left (10 s grace)."""
    out, shm = work / f"ray-stop-{len(table.rows)}", _gantool_shm()
    proc = started("generate", ckpt, "--seeds", "0-199999", "--out", out, "--engine", "ray",
                   "--actors", "2", "--shards", "4", "--format", "jpg", "--no-progress")
    wait_for(out, "shard-*/*.jpg", 100, proc, timeout=180)
    o = stopped(proc, sig, whole_job=whole, timeout=90)
    code = 143 if sig == signal.SIGTERM else 130
    last = (o.err.strip().splitlines() or [""])[-1]
    states = [folder_state(f, "jpg") for f in sorted(out.glob("shard-*"))]
    deadline = time.perf_counter() + 10
    while (_processes_of(out) or _gantool_shm() - shm) and time.perf_counter() < deadline:
        time.sleep(0.2)
    left = ", ".join(x for x in (f"{len(_processes_of(out))} render processes" if
                                 _processes_of(out) else "",
                                 f"{len(_gantool_shm() - shm)} /dev/shm segments" if
                                 _gantool_shm() - shm else "") if x)
    ok = (o.code == code and "whole" in last and "Traceback" not in o.err and
          "SIGTERM received" not in o.err and states and all(s[0] for s in states) and not left)
    unlisted = sum(int(s[1].split(" unlisted")[0].rsplit(" ", 1)[1]) for s in states)
    table.add("engines", name, f"{code}; all listed; nothing left",
              (ok, f"{_got(o, last[:40])}; {len(states)} shards, {unlisted} unlisted"
                   + (f"; {left}" if left else "")), o)


# ---- small ones: digits, a small dataset, foreign .pt files, workers (issue 39, class 7) --
SUPERSCRIPT_TWO, ARABIC_THREE, ARABIC_ZERO_SLASH_TWO = "\u00b2", "\u0663", "\u0660/\u0662"


def run_small(table: Table, work: Path, ckpt: Path) -> None:
    run_digits(table, work, ckpt)
    run_small_dataset(table, work)
    run_foreign_files(table, work, ckpt)
    o = gantool("generate", ckpt, "--seeds", "0-9", "--out", work / "w100k", "--format", "jpg",
                "--workers", "100000", "--no-progress", timeout=120)
    listed = len((work / "w100k" / "manifest.jsonl").read_text().splitlines()) \
        if (work / "w100k" / "manifest.jsonl").is_file() else 0
    ok, got = success(o, "encoding worker(s), not 100000")
    table.add("small", "generate --workers 100000", "capped, said; 10 images",
              (ok and listed == 10 and "wrote 10" in o.out, got), o)
    o = gantool("generate", ckpt, "--seeds", "0-9", "--out", work / "w-1", "--workers", "-1",
                "--no-progress", timeout=60)
    table.add("small", "generate --workers -1", "one-line error", one_line_error(o, "--workers"),
              o)


def run_digits(table: Table, work: Path, ckpt: Path) -> None:
    """Numbers in other scripts' digits (str.isdigit says yes, int says no or reads them):
    refused in one line wherever a user types one."""
    o = gantool("train", *TINY, "--data", "builtin:fashion-mnist", "--conditional", "--steps",
                "2", "--out", work / "cond", timeout=300)
    conditional = next((work / "cond").glob("*/checkpoints/last.pt"))
    train = ["train", *TINY, "--data", "builtin:fashion-mnist", "--out", work / "d-runs"]
    for name, args, words in (
            ("generate --class '\u00b2'", ["generate", conditional, "--seeds", "0-1", "--class",
                                           SUPERSCRIPT_TWO], "is not a class of this model"),
            ("generate --seeds '\u0663'", ["generate", ckpt, "--seeds", ARABIC_THREE],
             "bad seed item"),
            ("generate --shard '\u0660/\u0662'", ["generate", ckpt, "--seeds", "0-3", "--shard",
                                                  ARABIC_ZERO_SLASH_TWO], "digits 0-9"),
            ("generate --devices 'cuda:\u00b2'", ["generate", ckpt, "--seeds", "0-3",
                                                  "--devices", f"cuda:{SUPERSCRIPT_TWO}"],
             "is not cpu"),
            ("train --max-time '\u00b2:00'", [*train, "--max-time", f"{SUPERSCRIPT_TWO}:00"],
             "cannot read"),
            ("train --set train.steps=\u0663", [*train, "--set", f"train.steps={ARABIC_THREE}"],
             "expected an integer")):
        out = ["--out", work / f"d{len(table.rows)}", "--no-progress"] \
            if args[0] == "generate" else []
        o = gantool(*args, *out, timeout=120)
        table.add("small", name, "one-line error", one_line_error(o, words), o)
    table.add("small", "explore /api/grid?class=\u00b2", "400 and one line, not a 500",
              *explore_answer(conditional, "/api/grid?start=0&count=2&class=%C2%B2"))


def explore_answer(ckpt: Path, query: str) -> tuple[tuple[bool, str], None]:
    """A real `gantool explore` server's answer to ``query``: (400 with one-line error, got)."""
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "explore", str(ckpt), "--port",
                             "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line, deadline = "", time.perf_counter() + 120
        while "http://" not in line and time.perf_counter() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        if "http://" not in line:
            return (False, f"explore did not start: {line.strip()[:80]}"), None
        url = line.split("gantool explore: ")[1].split()[0].rstrip("/")
        try:
            with urllib.request.urlopen(url + query, timeout=60) as r:
                return (False, f"HTTP {r.status}: {r.read()[:80]!r}"), None
        except urllib.error.HTTPError as e:
            said = json.loads(e.read()).get("error", "")
            return (e.code == 400 and "not a class" in said and "\n" not in said,
                    f"HTTP {e.code}: {said[:90]}"), None
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_small_dataset(table: Table, work: Path) -> None:
    """The few-shot preset (batch 8) on a folder of 3 images: trains on batches of 3, says so
    in one line; a batch size the user names is still theirs (one-line error)."""
    folder = work / "three"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8)).save(
            folder / f"{i}.png")
    o = gantool("train", "--preset", "few-shot", "--data", folder, "--steps", "1",
                "--no-progress", "--out", work / "few", timeout=300)
    table.add("small", "few-shot preset on 3 images", "batches of 3, said",
              success(o, "note: batches of 3 images, not 8"), o)
    o = gantool("train", "--preset", "few-shot", "--data", folder, "--steps", "1",
                "--batch-size", "8", "--no-progress", "--out", work / "few8", timeout=300)
    table.add("small", "few-shot on 3 images, --batch-size 8", "one-line error",
              one_line_error(o, "fewer than the batch size 8"), o)


def run_foreign_files(table: Table, work: Path, ckpt: Path) -> None:
    """.pt files that are not gantool checkpoints: said for what they are in one line, never
    PyTorch's advice to load them with weights_only=False."""
    import torch

    files = {"a pickled nn.Module": ("module.pt", "pickled torch.nn.modules.linear.Linear"),
             "a plain pickle": ("plain.pt", "it is a Python pickle"),
             "a truncated checkpoint": ("cut.pt", "the file is truncated")}
    torch.save(torch.nn.Linear(2, 2), work / "module.pt")
    (work / "plain.pt").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    (work / "cut.pt").write_bytes(ckpt.read_bytes()[:6773])  # torch: [Errno 22]
    for kind, (name, words) in files.items():
        for command in (["info", work / name],
                        ["generate", work / name, "--seeds", "0", "--out", work / "fo"],
                        ["train", "--resume", work / name]):
            o = gantool(*command, timeout=120)
            ok, got = one_line_error(o, words)
            table.add("small", f"{kind}: {command[0]}", "what it is, one line",
                      (ok and "weights_only" not in o.err and "Errno" not in o.err, got), o)


# ---- run files ----------------------------------------------------------------------------
DAMAGED_ROWS = [b"123", b"null", b'{"step": "abc", "loss_d": 1.0}', b'{"step": 2, "loss_d": "x"}',
                b"\xff\xfe not utf-8", b'{"step": 2, "event": "rollback"}', b'{"step": 2, "loss']


def run_runfiles(table: Table, work: Path) -> None:
    o = gantool("train", *TINY, "--data", "builtin:fashion-mnist", "--steps", "8",
                "--checkpoint-every", "4", "--set", "train.keep=3", "--out", work / "rf",
                timeout=300)
    run_dir = next((work / "rf").iterdir())
    metrics = run_dir / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b"\n".join(DAMAGED_ROWS) + b"\n")
    o = gantool("report", run_dir, timeout=300)
    ok, got = success(o)
    table.add("runfiles", "report over 7 damaged metric lines", "report; one line about them",
              (ok and f"{len(DAMAGED_ROWS)} damaged" in o.out + o.err, got), o)
    newest = run_dir / "checkpoints" / "step-0000008.pt"
    with newest.open("r+b") as f:  # in place: last.pt is the same file
        f.truncate(newest.stat().st_size // 2)
    o = gantool("train", "--resume", run_dir, "--steps", "10", "--no-progress", timeout=300)
    text = o.out + o.err
    said = ("is damaged" in text and "resuming from step 4" in text
            and f"dropped {len(DAMAGED_ROWS)} damaged line(s)" in text)
    import torch

    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
    ok, got = success(o)
    table.add("runfiles", "resume: damaged lines + half newest ckpt", "resumes from step 4 to 10",
              (ok and said and last == 10, f"{got}; last.pt at step {last}"), o)


# ---- exports ------------------------------------------------------------------------------
def run_exports(table: Table, work: Path, ckpt: Path) -> None:
    try:
        import onnx
    except ImportError as e:
        table.add("exports", "all", "skipped", (True, f"no onnx extra ({e})"))
        return
    out = work / "tamper"
    o = gantool("export", ckpt, "--out", out, "--fp16", timeout=300)
    if o.code != 0:
        table.add("exports", "export", "exported", success(o), o)
        return
    o = gantool("info", out, "--verify", timeout=120)
    table.add("exports", "info --verify, untouched", "verified", success(o, "verified"), o)
    model = onnx.load(str(out / "model.onnx"))
    raw = max((t.raw_data for t in model.graph.initializer), key=len)
    data = bytearray((out / "model.onnx").read_bytes())
    data[data.find(raw) + len(raw) // 2] ^= 0x10  # one bit of one weight: still a valid model
    (out / "model.onnx").write_bytes(data)
    for command in (["info", out, "--verify"], ["generate", out, "--backend", "onnx", "--seeds",
                                                "0-1", "--out", work / "tg"]):
        o = gantool(*command, timeout=120)
        table.add("exports", f"bit flip in a weight: {command[0]}", "one line naming the file",
                  one_line_error(o, "model.onnx is not the file gantool export wrote"), o)
    alone = work / "alone"
    alone.mkdir()
    clean = onnx.load(str(out / "model_fp16.onnx"))
    (alone / "model.onnx").write_bytes(
        clean.SerializeToString().replace(b"ConvTranspose", b"ConvTranspoze"))
    o = gantool("generate", alone, "--backend", "onnx", "--seeds", "0", "--grid",
                work / "a.png", timeout=120)
    table.add("exports", "corrupted op name, no export.json", "one-line error",
              one_line_error(o, "ONNX Runtime cannot load"), o)
    for prop in clean.metadata_props:
        if prop.key == "gantool.nz":
            prop.value = "7"
    onnx.save(clean, str(alone / "model.onnx"))
    o = gantool("generate", alone, "--backend", "onnx", "--seeds", "0", "--grid",
                work / "a.png", timeout=120)
    table.add("exports", "metadata nz 7, graph nz 100", "one-line error",
              one_line_error(o, "metadata says nz 7"), o)


# ---- triton -------------------------------------------------------------------------------
def run_triton(table: Table, work: Path, ckpt: Path) -> None:
    try:
        from gantool.serve.server import TritonServer, free_port
    except ImportError as e:
        table.add("triton", "all", "skipped", (True, f"no serve extra ({e})"))
        return
    export = work / "export"
    o = gantool("export", ckpt, "--out", export, "--formats", "onnx,triton", timeout=300)
    if o.code != 0:
        table.add("triton", "export", "exported", success(o), o)
        return
    http, grpc = free_port(), free_port()
    server = TritonServer(export / "model_repository", http, grpc)
    server.start()
    try:
        url = server.grpc_url
        bad = subprocess.Popen([sys.executable, "-m", "gantool", "render", "--url", url,
                                "--seeds", "0-7", "--truncation", "1e-9", "--out",
                                work / "bad-render", "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = bad.communicate(timeout=60)
        table.add("triton", "render --truncation 1e-9", "one-line error", one_line_error(
            Outcome(bad.returncode, "", err.decode(), 0, 0), "minimum"))
        # the same request sent raw, past the client's check, again and again beside a render
        alone = gantool("render", "--url", url, "--seeds", "0-999", "--out",
                        work / "alone", "--no-progress", timeout=300)
        stop, refused = threading.Event(), []
        flood = threading.Thread(target=_bad_requests, args=(url, stop, refused))
        flood.start()
        try:
            beside = gantool("render", "--url", url, "--seeds", "0-999", "--out",
                             work / "beside", "--no-progress", timeout=300)
        finally:
            stop.set()
            flood.join()
        rates = [_rate(alone), _rate(beside)]
        ok, got = success(beside, "wrote 1000 image(s)")
        table.add("triton", "render beside raw t=1e-9 requests", "1000 images, same rate",
                  (ok and refused and all(r == "minimum" for r in refused[:50]),
                   f"{rates[1]:.0f} vs {rates[0]:.0f} images/s alone "
                   f"({rates[1] / rates[0]:.2f}x); {len(refused)} bad requests refused"),
                  beside)
        # kill the server mid-render, bring it back 10 s later
        out = work / "restart-render"
        proc = subprocess.Popen([sys.executable, "-m", "gantool", "render", "--url", url,
                                 "--seeds", "0-1999", "--out", out, "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = time.perf_counter()
        while len(list(out.glob("*.png"))) < 100 and time.perf_counter() - start < 120:
            time.sleep(0.1)
        os.kill(server.process.pid, signal.SIGKILL)
        server.stop()
        time.sleep(10)
        server = TritonServer(export / "model_repository", http, grpc)
        server.start()
        stdout, err = proc.communicate(timeout=600)
        o = Outcome(proc.returncode, stdout.decode(), err.decode(),
                    time.perf_counter() - start, 0)
        n = len(list(out.glob("*.png")))
        ok, got = success(o, "wrote 2000 image(s)")
        table.add("triton", "server kill -9 mid-render, 10 s down", "all 2,000 images",
                  (ok and n == 2000, got), o)
        o = gantool("render", "--url", url, "--seeds", "0-7", "--truncation", "0.01", "--out",
                    work / "t001", "--no-progress", timeout=120)
        table.add("triton", "render --truncation 0.01 (the minimum)", "8 images",
                  success(o, "wrote 8 image(s)"), o)
        out = work / "term-shm"
        proc = started("render", "--url", url, "--seeds", "0-99999", "--out", out,
                       "--shared-memory", "on", "--no-progress")
        wait_for(out, "*.png", 50, proc)
        workers = children(proc.pid)
        o = stopped(proc, signal.SIGTERM)
        last = (o.err.strip().splitlines() or [""])[-1]
        whole, state = folder_state(out, "png")
        left = leftovers(proc.pid, workers)
        table.add("triton", "SIGTERM job, shared-memory render", "143; all listed; no shm",
                  (o.code == 143 and "Traceback" not in o.err and whole and not left,
                   f"{_got(o, last[:40])}; {state}" + (f"; {left}" if left else "")), o)
    finally:
        server.stop()
    run_triton_starts(table, work, export / "model_repository")


def run_triton_starts(table: Table, work: Path, repository: Path) -> None:
    """How ``gantool serve`` starts, or says in one line why it cannot."""
    from gantool.serve.server import free_port

    odd = work / "my models" / "modèle" / "model_repository"
    shutil.copytree(repository, odd)
    http, grpc = free_port(), free_port()
    proc = started("serve", odd, "--http-port", http, "--grpc-port", grpc)
    ready = _serving(proc)
    o = gantool("render", "--url", f"127.0.0.1:{grpc}", "--seeds", "0-3", "--out",
                work / "odd-render", "--no-progress", timeout=120) if ready else None
    stop = stopped(proc, signal.SIGINT, whole_job=False)
    table.add("triton", "repository under 'my models/modèle'", "serves; 4 images",
              success(o, "wrote 4 image(s)") if o else (False, _got(stop, stop.err[-90:])), o)
    v6 = free_port("::1") if socket.has_ipv6 else None
    if v6 is not None:
        proc = started("serve", repository, "--host", "::1", "--http-port", free_port("::1"),
                       "--grpc-port", v6)
        ready = _serving(proc)
        stop = stopped(proc, signal.SIGINT, whole_job=False)
        table.add("triton", "serve --host ::1", "serves; stops on Ctrl-C",
                  (ready and stop.code == 0, _got(stop, "ready" if ready else stop.err[-90:])),
                  stop)
    port = free_port()
    o = gantool("serve", repository, "--http-port", port, "--grpc-port", port, timeout=60)
    table.add("triton", "one port for HTTP and gRPC", "one-line error",
              one_line_error(o, "both"), o)
    raising = work / "raising"
    shutil.copytree(repository, raising)
    code = raising / "latent" / "1" / "model.py"
    code.write_text(code.read_text().replace(
        "    def initialize(self, args):",
        "    def initialize(self, args):\n        import json; json.loads('{bad')", 1))
    o = gantool("serve", raising, "--http-port", free_port(), "--grpc-port", free_port(),
                timeout=180)
    ok, got = one_line_error(o, "could not load model 'latent'")
    table.add("triton", "a model whose code raises", "one line, no stack",
              (ok and "At:" not in o.err.split("error:")[-1], got), o)


def _serving(proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Whether ``gantool serve`` says it is ready within ``timeout`` s."""
    deadline = time.perf_counter() + timeout
    for line in proc.stderr:
        if "Triton ready" in line:
            return True
        if proc.poll() is not None or time.perf_counter() > deadline:
            return False
    return False


def _bad_requests(url: str, stop: threading.Event, refused: list) -> None:
    """Send t=1e-9 to the server's ``render`` model, 20 requests a second until ``stop``;
    note how each was refused."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    seed = grpcclient.InferInput("seed", [4, 1], "INT64")
    seed.set_data_from_numpy(np.arange(4, dtype=np.int64).reshape(-1, 1))
    trunc = grpcclient.InferInput("truncation", [4, 1], "FP32")
    trunc.set_data_from_numpy(np.full((4, 1), 1e-9, np.float32))
    while not stop.is_set():
        try:
            client.infer("render", [seed, trunc], client_timeout=30)
            refused.append("ANSWERED")
        except InferenceServerException as e:
            refused.append("minimum" if "minimum" in str(e) else str(e)[:60])
        stop.wait(0.05)  # a persistent bad client, not a flood of the machine's two cores


def _rate(o: Outcome) -> float:
    """images/s from a render's closing line."""
    import re

    m = re.search(r"\(([\d,.]+) images/s", o.out)
    return float(m.group(1).replace(",", "")) if m else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip", default="", help=f"comma-separated groups of {', '.join(GROUPS)}")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args()
    skip = {g.strip() for g in args.skip.split(",") if g.strip()}
    table = Table()
    with tempfile.TemporaryDirectory(prefix="gantool-reliability-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        o = gantool("train", *TINY, "--data", "builtin:fashion-mnist", "--steps", "4", "--out",
                    work / "base", timeout=300)
        assert o.code == 0, o.err
        ckpt = next((work / "base").glob("*/checkpoints/last.pt"))
        steps = {"data": lambda: run_data(table, work),
                 "args": lambda: run_args(table, work, ckpt),
                 "small": lambda: run_small(table, work, ckpt),
                 "checkpoints": lambda: run_checkpoints(table, work, ckpt),
                 "kills": lambda: run_kills(table, work),
                 "stops": lambda: run_stops(table, work),
                 "outputs": lambda: run_outputs(table, work, ckpt),
                 "folders": lambda: run_folders(table, work, ckpt),
                 "engines": lambda: run_engines(table, work, ckpt),
                 "records": lambda: run_records(table, work, ckpt),
                 "runfiles": lambda: run_runfiles(table, work),
                 "exports": lambda: run_exports(table, work, ckpt),
                 "triton": lambda: run_triton(table, work, ckpt)}
        for group in GROUPS:
            if group not in skip:
                steps[group]()
        shutil.rmtree(work, ignore_errors=True)
    table.print()
    if args.json:
        Path(args.json).write_text(json.dumps({"load_average": os.getloadavg(),
                                               "rows": table.rows}, indent=2) + "\n")
    sys.exit(0 if all(r["ok"] for r in table.rows) else 1)


if __name__ == "__main__":
    main()
