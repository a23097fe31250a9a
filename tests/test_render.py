"""The output stage of a render: exact image encoders, the writer's threads and processes,
bounded memory, resume, interruption and a full disk, all on real files and processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantool.errors import GantoolError
from gantool.sampling.images import Encoding, fast_png, save_image
from gantool.sampling.pipeline import render_seeds
from gantool.system import signals_held

from conftest import CTRL_C_ABLE, gantool_cli
from patterns import PatternGenerator

TESTS = Path(__file__).resolve().parent


def _images(channels: int, h: int, w: int) -> list[np.ndarray]:
    """Noise (incompressible) and a smooth ramp with flat areas (the run-length paths)."""
    rng = np.random.default_rng(h * 1000 + w + channels)
    noise = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, w, channels))
    smooth = ramp.copy()
    smooth[: h // 2] = 7
    return [noise, smooth]


def _decoded(path: Path) -> np.ndarray:
    a = np.asarray(Image.open(path))
    return a[..., None] if a.ndim == 2 else a


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("png_level", [None, 0, 1, 9])
def test_png_files_decode_to_exactly_the_generated_pixels(tmp_path, channels, png_level):
    for h, w in [(1, 1), (28, 28), (61, 67), (256, 256)]:
        for i, image in enumerate(_images(channels, h, w)):
            path = save_image(image, tmp_path / f"{h}x{w}-{i}.png", encoding=Encoding(
                png_level=png_level))
            got = _decoded(path)
            assert got.dtype == np.uint8 and got.shape == image.shape
            np.testing.assert_array_equal(got, image)


def test_fpng_is_the_default_png_writer_where_installed():
    if fast_png() is None:
        pytest.skip("the fastpng extra (fpng) is not installed here")
    assert Encoding().encoder(3) == "fpng" and Encoding().encoder(4) == "fpng"
    assert Encoding().encoder(1) == "pillow", "fpng writes no grayscale PNG"
    assert Encoding(png_level=6).encoder(3) == "pillow", "a level asks for zlib"
    assert Encoding().holds_gil(3) and not Encoding().holds_gil(1)


def test_without_fpng_renders_fall_back_to_pillow_and_stay_exact(tmp_path):
    """The default install without the optional encoder: what CI has if fpng is missing."""
    script = tmp_path / "no_fpng.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.modules["fpng"] = None  # the import fails, as it does without the extra
        from pathlib import Path
        from gantool.sampling.images import Encoding, fast_png
        from gantool.sampling.pipeline import render_seeds
        from patterns import PatternGenerator

        if __name__ == "__main__":
            assert fast_png() is None and Encoding().encoder(3) == "pillow"
            render_seeds(PatternGenerator(96, 3), range(12), None, 5, Path({str(tmp_path)!r}) /
                         "out", progress=False)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(TESTS)}, timeout=120)
    assert r.returncode == 0, r.stderr
    gen = PatternGenerator(96, 3)
    for s in range(12):
        np.testing.assert_array_equal(_decoded(tmp_path / "out" / f"seed{s:06d}.png"),
                                      gen.image(s))


@pytest.mark.parametrize("fmt, png_level", [("png", None), ("png", 1), ("jpg", None),
                                            ("npy", None)])
def test_thread_and_process_writers_write_the_same_files(tmp_path, fmt, png_level):
    gen = PatternGenerator(64, 3)
    encoding = Encoding(fmt, png_level)
    for parallel in ("thread", "process"):
        stats = render_seeds(gen, range(23), None, 5, tmp_path / parallel, encoding=encoding,
                             workers=2, depth=2, parallel=parallel, progress=False)
        assert stats["written"] == 23
    a, b = (sorted((tmp_path / p).iterdir()) for p in ("thread", "process"))
    assert [p.name for p in a] == [p.name for p in b]
    files = [p for p in a if p.name not in ("manifest.jsonl", ".lock")]
    assert len(files) == 23 and not [p for p in a if p.name.endswith(".tmp")]
    assert all(x.read_bytes() == (tmp_path / "process" / x.name).read_bytes() for x in files)
    if fmt != "jpg":  # lossless formats: exactly the generated pixels
        for s in (0, 22):
            path = tmp_path / "thread" / f"seed{s:06d}.{fmt}"
            got = np.load(path) if fmt == "npy" else _decoded(path)
            np.testing.assert_array_equal(got, gen.image(s))
    for p in ("thread", "process"):
        rows = [json.loads(x) for x in (tmp_path / p / "manifest.jsonl").read_text().splitlines()]
        assert sorted(r["seed"] for r in rows) == list(range(23))


_PEAK = """
import resource, sys
from pathlib import Path
from gantool.sampling.pipeline import render_seeds
from gantool.system import signals_held
from patterns import PatternGenerator

if __name__ == "__main__":
    n, out = int(sys.argv[1]), Path(sys.argv[2])
    render_seeds(PatternGenerator(512, 3), range(n), None, 16, out, progress=False)
    status = Path("/proc/self/status").read_text()
    hwm = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM"))
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(hwm, workers, len(list(out.glob("*.png"))))
"""


@pytest.mark.slow
def test_a_large_render_holds_a_bounded_number_of_images(tmp_path):
    """5,000 images of 512 px are 3.9 GB; a render holds a few slots of 16 of them (50 MB)."""
    script = tmp_path / "peak.py"
    script.write_text(_PEAK)
    peaks = {}
    for n in (200, 5000):
        r = subprocess.run([sys.executable, str(script), str(n), str(tmp_path / str(n))],
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONPATH": str(TESTS)})
        assert r.returncode == 0, r.stderr
        hwm, workers, files = map(int, r.stdout.split())
        assert files == n
        peaks[n] = (hwm, workers)
    grew = (peaks[5000][0] - peaks[200][0]) / 1024, (peaks[5000][1] - peaks[200][1]) / 1024
    assert grew[0] < 100 and grew[1] < 100, f"peak RSS grew by {grew} MB (main, a worker)"


def test_a_grid_too_large_to_hold_is_refused_before_drawing(tiny_ckpt, tmp_path):
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-4096", "--grid", tmp_path / "g.png")
    assert r.returncode == 2 and r.stderr.startswith("error: --grid: a grid of 4,097 images")
    assert r.stderr.rstrip().endswith("write them to a folder, and a grid of a few (see --out)")
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())
    with pytest.raises(GantoolError, match="too large"):
        render_seeds(PatternGenerator(1024, 3), range(700), None, 8, grid=tmp_path / "g.png")


@pytest.mark.parametrize("parallel", ["thread", "process"])
def test_a_huge_batch_size_is_capped_at_the_work(tmp_path, parallel):
    """--batch-size 1e9 for 5 images: slots for 5, not a MemoryError."""
    stats = render_seeds(PatternGenerator(32, 3), range(5), None, 10**9, outdir=tmp_path,
                         workers=1, parallel=parallel, progress=False)
    assert stats["written"] == 5 and len(list(tmp_path.glob("seed*.png"))) == 5


def test_resume_lists_unlisted_files_and_clears_stale_temp_files(tmp_path):
    gen = PatternGenerator(32, 3)
    render_seeds(gen, range(10), None, 4, tmp_path, progress=False)
    manifest = tmp_path / "manifest.jsonl"
    rows = manifest.read_text().splitlines()
    manifest.write_text("\n".join(rows[:6]) + "\n")  # an interruption lost the last rows
    stale, fresh = tmp_path / ".seed000010.png.abc.tmp", tmp_path / ".seed000011.png.def.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"another render is writing this")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    stats = render_seeds(gen, range(12), None, 4, tmp_path, progress=False)
    assert (stats["skipped"], stats["written"]) == (10, 2)
    seeds = [json.loads(x)["seed"] for x in manifest.read_text().splitlines()]
    assert sorted(seeds) == list(range(12)), "every file listed once"
    assert not stale.exists() and fresh.exists()


_INTERRUPTED = """
import sys
from pathlib import Path
from gantool.sampling.pipeline import render_seeds
from gantool.system import signals_held
from patterns import PatternGenerator

if __name__ == "__main__":
    print("started", flush=True)
    render_seeds(PatternGenerator(256, 3, delay=0.05), range(100000), None, 8,
                 Path(sys.argv[1]), progress=False)
"""


def _rendering(script: Path, out: Path, files: int) -> subprocess.Popen:
    """``script OUT`` started (Ctrl-C-able) and past its first ``files`` images in ``out``."""
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(TESTS)}, **CTRL_C_ABLE)
    assert proc.stdout.readline().strip() == "started"
    deadline = time.time() + 60
    while len(list(out.glob("*.png"))) < files and time.time() < deadline:
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("parallel", ["process", "thread"])
def test_ctrl_c_leaves_whole_listed_files_and_no_shared_memory(tmp_path, parallel):
    script = tmp_path / "interrupted.py"
    script.write_text(_INTERRUPTED.replace("progress=False", f"progress=False, "
                                                             f"parallel={parallel!r}"))
    out = tmp_path / "out"
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    proc = _rendering(script, out, files=40)
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    files = sorted(p.name for p in out.glob("*.png"))
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(files) >= 40 and sorted(r["file"] for r in rows) == files
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    gen = PatternGenerator(256, 3)
    for name in files[-3:]:
        np.testing.assert_array_equal(_decoded(out / name), gen.image(int(name[4:10])))
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert not [n for n in after - before if n.startswith("gantool-")]


def test_a_full_disk_is_one_line_and_leaves_only_whole_files(tmp_path, small_disk):
    disk = small_disk("2m")
    script = tmp_path / "full.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from gantool.errors import GantoolError
        from gantool.sampling.pipeline import render_seeds
        from patterns import PatternGenerator

        if __name__ == "__main__":
            try:
                render_seeds(PatternGenerator(256, 3), range(200), None, 8,
                             Path({str(disk)!r}), progress=False)
            except GantoolError as e:
                print("error:", e)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(TESTS)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("error: cannot write") and "No space left" in r.stdout
    gen = PatternGenerator(256, 3)
    listed = [json.loads(x)["file"] for x in (disk / "manifest.jsonl").read_text()
              .splitlines()] if (disk / "manifest.jsonl").exists() else []
    for name in listed:
        np.testing.assert_array_equal(_decoded(disk / name), gen.image(int(name[4:10])))
    assert not [p for p in os.listdir(disk) if p.endswith(".tmp")]


def test_a_second_writer_into_a_folder_is_refused_while_the_first_runs(tmp_path):
    """Two renders into one folder used to both run and list every file twice (or under two
    truncations); the second now stops with one line before touching the folder."""
    script = tmp_path / "holder.py"
    script.write_text(_INTERRUPTED)
    out = tmp_path / "out"
    proc = _rendering(script, out, files=1)
    try:
        with pytest.raises(GantoolError, match=rf"another gantool process \(pid {proc.pid}\) "
                                               rf"is writing images into {out}; wait"):
            render_seeds(PatternGenerator(256, 3), range(10**6, 10**6 + 4), 0.5, 4, out,
                         progress=False)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert all(r["seed"] < 10**6 and r["truncation"] is None for r in rows)
    stats = render_seeds(PatternGenerator(256, 3), range(3), None, 4, out, progress=False)
    assert stats["skipped"] == 3  # the lock went with its process; the folder resumes


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def test_render_workers_die_with_a_killed_parent(tmp_path):
    """kill -9 leaves the parent no chance to drain its writer processes: they go with it."""
    script = tmp_path / "killed.py"
    script.write_text(_INTERRUPTED.replace("progress=False", "progress=False, "
                                                             "parallel='process'"))
    proc = _rendering(script, tmp_path / "out", files=10)
    workers = _children(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.time() + 10
    while [p for p in workers if Path(f"/proc/{p}").exists()] and time.time() < deadline:
        time.sleep(0.1)
    assert workers and not [p for p in workers if Path(f"/proc/{p}").exists()]


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_sigterm_to_the_whole_job_stops_a_render_like_ctrl_c(tiny_ckpt, tmp_path):
    """What Slurm and Kubernetes do on preemption (SIGTERM to every process of the job) during
    a render with process workers: whole files, each listed once, no worker or shared memory
    left, exit 143 with the hint; running it again finishes the job."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "gantool", "generate", str(tiny_ckpt), "--seeds", "0-199999",
            "--out", str(out), "--format", "jpg", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(list(out.glob("*.jpg"))) < 50 and time.time() < deadline:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "the render runs process workers"
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM); the files written are "
                                                   "whole"), err
    assert "Traceback" not in err
    deadline = time.time() + 10  # workers drain their queue, then exit
    while [p for p in workers if Path(f"/proc/{p}").exists()] and time.time() < deadline:
        time.sleep(0.1)
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in workers
            if Path(f"/proc/{p}").exists()}
    assert not left, f"orphan processes: {left}"
    assert not [p for p in os.listdir("/dev/shm") if p.startswith(f"gantool-{proc.pid}-")]
    files = sorted(p.name for p in out.glob("*.jpg"))
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(files) >= 50 and sorted(r["file"] for r in rows) == files
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    last = max(int(name[4:10]) for name in files) + 20
    r = subprocess.run([*args[:6], f"0-{last}", *args[7:]], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in rows) == [f"seed{s:06d}.jpg" for s in range(last + 1)]


def test_signals_held_defers_ctrl_c_to_the_end_of_the_block():
    """A manifest append is never cut in two: Ctrl-C inside the block arrives after it. (Python's
    Ctrl-C handler is installed for the test: a suite started in the background, `make test &`
    or nohup, inherits SIGINT as ignored.)"""
    reached = []
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                reached.append("end of block")
        assert reached == ["end of block"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
