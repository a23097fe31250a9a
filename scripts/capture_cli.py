"""Capture what gantool prints and writes, to show that a change of the code's shape changes
none of it: every command's --help, and a session of real commands (train, generate in every
layout and engine, export, info, video, report, eval, import, serve and render through Triton,
merge-shards, bench) with their mistakes, run in a temporary folder.

    python scripts/capture_cli.py before.txt     # on the old commit
    python scripts/capture_cli.py after.txt      # on the new one
    diff before.txt after.txt                    # empty: nothing a user sees changed

Timings, rates, temporary paths and ports are masked; everything else (messages, exit codes,
the files written, by name and SHA-256) is compared as it is. Two captures of one commit agree.
"""

# ruff: noqa: E501 - the session reads as the commands a user types, one per line
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = ["train", "demo", "generate", "merge-shards", "video", "export", "info", "import",
            "eval", "report", "serve", "render", "explore", "bench"]
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "imported"

CKPT = "runs/00001-demo/checkpoints/last.pt"
SESSION = [
    # training and its mistakes
    "demo --steps 20 --out runs",
    "train --list-presets",
    "train --data no/such/folder --steps 2",
    "train --preset no-such-preset --data builtin:fashion-mnist",
    "train --data builtin:fashion-mnist --set train.lr_g=fast",
    "train --data builtin:fashion-mnist --max-time soon",
    "train --resume runs/00001-demo --set model.nz=3",
    "train --resume runs/00001-demo --steps 24 --no-progress",
    "info " + CKPT,
    "info runs/00001-demo/checkpoints/no-such.pt",
    # generate: every layout, engine and grid, and its mistakes
    f"generate {CKPT} --seeds 0-63 --grid out/grid.png --no-progress",
    f"generate {CKPT} --seeds 0-15 --grid out/sweep.png --truncation-sweep 0.5,1,none --no-progress",
    f"generate {CKPT} --seeds 0-9 --out flat --no-progress",
    f"generate {CKPT} --seeds 0-9 --out flat --no-progress",
    f"generate {CKPT} --seeds 0-9 --out subdirs --layout subdirs --format jpg --no-progress",
    f"generate {CKPT} --seeds 0-9 --out wds --layout webdataset --tar-images 4 --no-progress",
    f"generate {CKPT} --seeds 0-9 --out sharded --shard 1/2 --no-progress",
    "merge-shards sharded",
    f"generate {CKPT} --seeds 0-9 --out sharded --shard 0/2 --no-progress",
    "merge-shards sharded",
    "merge-shards flat",
    f"generate {CKPT} --seeds 0-9 --out devices --devices cpu,cpu --no-progress",
    f"generate {CKPT} --seeds 0-9 --out ray --engine ray --actors 2 --no-progress",
    f"generate {CKPT} --seeds 0- --out bad",
    f"generate {CKPT} --seeds 0-3 --truncation much --out bad",
    f"generate {CKPT} --seeds 0-3 --class 2 --out bad",
    f"generate {CKPT} --seeds 0-3 --backend onnx --out bad",
    f"generate {CKPT} --seeds 0-99999999 --grid out/huge.png",
    f"generate {CKPT} --seeds 0-3 --truncation-sweep 0.5 --out bad",
    f"generate {CKPT} --seeds 0-3 --shard 3/2 --out bad",
    f"generate {CKPT} --seeds 0-3 --devices cpu --engine ray --out bad",
    "generate no/such.pt --seeds 0-3 --out bad",
    # export, info, drawing from the export
    f"export {CKPT} --out export/demo",
    f"export {CKPT} --out export/demo --formats onnx,triton --fp16",
    f"export {CKPT} --out export/other --formats onnx,nothing",
    f"export {CKPT} --out export/other --formats engine",
    "info export/demo --verify",
    "info export/demo/model.onnx",
    "generate export/demo --backend onnx --seeds 0-9 --out onnx --no-progress",
    "generate export/demo --backend onnx --fp16 --seeds 0-3 --grid out/fp16.png --no-progress",
    "generate export/demo --backend trt --seeds 0-3 --out bad",
    # video, report, eval, bench
    f"video {CKPT} --seeds 0-3 --frames-per-seed 4 --out out/walk.gif --no-progress",
    f"video {CKPT} --seeds 0-3 --frames-per-seed 4 --grid 2x1 --frames-dir frames --no-progress",
    "video export/demo --backend onnx --seeds 0-3 --frames-per-seed 2 --out out/walk.webp --no-progress",
    f"video {CKPT} --seeds 0-3 --out out/walk.avi",
    "report runs/00001-demo",
    "report no/such/run",
    f"eval {CKPT} --data builtin:fashion-mnist --num 64 --no-progress",
    f"eval {CKPT} --data builtin:fashion-mnist --metrics fid,nothing",
    f"bench {CKPT} --backend torch,nothing",
    # import
    f"import {FIXTURES}/sg2-cond-16.pkl --out imported/sg2.pt",
    f"import {FIXTURES}/sg2-cond-16.pkl --out imported/sg2.pt",
    f"import {FIXTURES}/bad-shapes.pkl --out imported/bad.pt",
    "info imported/sg2.pt",
    "generate imported/sg2.pt --seeds 0-3 --class all --grid out/classes.png --no-progress",
    "generate imported/sg2.pt --seeds 0-3 --truncation 0.7 --out sg2 --no-progress",
    "generate imported/sg2.pt --seeds 0-3 --class nope --out bad",
    # serving
    "serve export/demo/model_repository --http-port {http} --grpc-port {grpc} &",
    "render --url 127.0.0.1:{grpc} --seeds 0-9 --out rendered --no-progress",
    "render --url 127.0.0.1:{http} --protocol http --seeds 0-9 --out rendered-http --layout webdataset --no-progress",
    "render --url 127.0.0.1:{grpc} --seeds 0-3 --out rendered --no-progress",
    "render --url 127.0.0.1:{grpc} --seeds 0-3 --class 1 --out bad",
    "video --url 127.0.0.1:{grpc} --seeds 0-3 --frames-per-seed 2 --out out/served.gif --no-progress",
    "render --url 127.0.0.1:1 --seeds 0-3 --out bad",
    "serve no/such/repository",
]

MASKS = [
    (re.compile(r"\d+:\d\d:\d\d(\.\d+)?"), "H:MM:SS"),
    (re.compile(r"\d[\d,]*(\.\d+)?( ?)(s|ms|µs|min)\b"), r"N\2\3"),
    (re.compile(r"\d[\d,]*(\.\d+)?( ?)(\w+|it)/s\b"), r"N\2\3/s"),
    (re.compile(r"\d[\d,]*(\.\d+)?( ?)(MB|MiB|GB|GiB|KB|KiB|kB|B)/s\b"), r"N\2\3/s"),
    (re.compile(r"\b(pid|PID) \d+"), r"\1 N"),
    (re.compile(r"(load average|load) [\d.]+(, [\d.]+)*"), r"\1 N"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*"), "DATE"),
]


STATUS = re.compile(r"(train|generate|render|video|eval) \d[\d,]*/[\d,?]+ ")  # a status line: timed


RAY_LOG = re.compile(r"\[\d{4}-\d\d-\d\d .*\.cc:\d+")  # Ray's core, in its own words


def mask(text: str, work: Path, ports: dict[str, int]) -> str:
    text = text.replace(str(work.resolve()), "<W>").replace(str(work), "<W>")
    text = text.replace(str(FIXTURES), "<FIXTURES>")
    for name, port in ports.items():
        text = text.replace(f":{port}", f":<{name}>")
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    lines = [ln for ln in text.splitlines() if "running for" not in ln
             and "no progress for" not in ln and not STATUS.match(ln) and not RAY_LOG.match(ln)]
    return "\n".join(lines)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UNSTABLE = {"metrics.jsonl", "session.json"}  # timings throughout
TIMED = re.compile(r"time|started|elapsed|seconds|_s$|created|date|host|pid|sha256|bytes")


def _stable(value):
    """A JSON value without the entries that differ from run to run (times, hosts, and the
    hashes and sizes of ONNX files, whose bytes the listing compares by their own digest)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not TIMED.search(k)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _tar_digest(path: Path, ports: dict[str, int]) -> str:
    import tarfile

    digest = hashlib.sha256()
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read()
            for name, port in ports.items():
                data = data.replace(f":{port}".encode(), f":<{name}>".encode())
            digest.update(member.name.encode() + b"\0" + data)
    return digest.hexdigest()[:16]


def files_written(work: Path, skip: tuple[str, ...], ports: dict[str, int]) -> list[str]:
    """Every file under the folder with its size and SHA-256 (content that embeds time, such as
    logs, HTML reports and checkpoints, by name only)."""
    rows = []
    for path in sorted(work.rglob("*")):
        if not path.is_file() or path.name.startswith(skip):
            continue
        rel = path.relative_to(work)
        if path.suffix == ".tar":  # its members, the server's port in their records masked
            rows.append(f"{rel}  {_tar_digest(path, ports)}")
        elif path.suffix in (".png", ".jpg", ".webp", ".npy", ".gif", ".onnx"):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            rows.append(f"{rel}  {path.stat().st_size}  {digest}")
        elif path.suffix in (".json", ".jsonl") and path.name not in UNSTABLE:
            records = [_stable(json.loads(ln)) for ln in path.read_text().splitlines()
                       if ln.strip()] if path.suffix == ".jsonl" else [
                           _stable(json.loads(path.read_text()))]
            digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
            rows.append(f"{rel}  {digest[:16]}")
        else:
            rows.append(f"{rel}")
    return rows


def run(command: str, work: Path, env: dict, ports: dict[str, int]) -> tuple[str, object]:
    argv = [str(BIN / "gantool"), *command.rstrip(" &").split()]
    if command.endswith("&"):
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/v2/health/ready",
                                       timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        return "(started in the background)", proc
    r = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    return (f"exit {r.returncode}\n--- stdout\n{mask(r.stdout, work, ports)}\n"
            f"--- stderr\n{mask(r.stderr, work, ports)}"), None


def capture(out: Path) -> None:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1",
           "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "PYTHONHASHSEED": "0",
           "RAY_DISABLE_USAGE_STATS": "1"}
    env.pop("FORCE_COLOR", None)
    where = subprocess.run([sys.executable, "-c", "import gantool; print(gantool.__file__)"],
                           env=env, capture_output=True, text=True).stdout.strip()
    print(f"capturing the gantool of {where}", file=sys.stderr, flush=True)
    sections = []
    for args in ([], ["-h"], ["--version"], *[[c, "--help"] for c in COMMANDS]):
        r = subprocess.run([str(BIN / "gantool"), *args], capture_output=True, text=True, env=env)
        sections.append(f"$ gantool {' '.join(args)}\nexit {r.returncode}\n{r.stdout}{r.stderr}")
    ports = {"http": free_port(), "grpc": free_port()}
    background = []
    with tempfile.TemporaryDirectory(prefix="gantool-capture-") as tmp:
        work = Path(tmp)
        try:
            for template in SESSION:
                command = template.format(**ports)
                text, proc = run(command, work, env, ports)
                if proc:
                    background.append(proc)
                sections.append(f"$ gantool {mask(template, work, ports)}\n{text}")
                print(f"{len(sections):3d} {command[:100]}", file=sys.stderr, flush=True)
        finally:
            for proc in background:
                proc.send_signal(signal.SIGTERM)
                log, _ = proc.communicate(timeout=60)
                sections.append(f"$ (the background server's output)\nexit {proc.returncode}\n"
                                f"{mask(log, work, ports)}")
        listing = files_written(work, ("events.out.tfevents",), ports)
        sections.append("$ (the files written)\n" + "\n".join(listing))
    out.write_text("\n\n".join(sections) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the capture file to write")
    capture(parser.parse_args().out)


if __name__ == "__main__":
    main()
