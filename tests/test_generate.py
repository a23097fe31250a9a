"""`gantool generate`: reproducible images by seed and truncation."""

import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from gantool.backends import Generator, load_backend
from gantool.cli.main import main

from conftest import CTRL_C_ABLE, gantool_cli


def _generate(ckpt, outdir, *extra):
    try:
        main(["generate", str(ckpt), "--out", str(outdir), "--no-progress", *extra])
    except SystemExit as e:
        assert e.code == 0, e.code


def _pngs(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_same_seed_same_bytes(tiny_ckpt, tmp_path):
    _generate(tiny_ckpt, tmp_path / "a", "--seeds", "0-9,42", "--truncation", "0.7")
    _generate(tiny_ckpt, tmp_path / "b", "--seeds", "0-9,42", "--truncation", "0.7")
    a = _pngs(tmp_path / "a")
    assert list(a) == [f"seed{s:06d}.png" for s in [*range(10), 42]]
    assert a == _pngs(tmp_path / "b")
    umask = os.umask(0)
    os.umask(umask)
    png = tmp_path / "a" / "seed000042.png"
    assert stat.S_IMODE(png.stat().st_mode) == 0o666 & ~umask, "files get the usual permissions"
    assert not list((tmp_path / "a").glob(".*.tmp")), "no temp files left behind"


def test_batch_size_does_not_change_the_image(tiny_ckpt, tmp_path):
    _generate(tiny_ckpt, tmp_path / "b1", "--seeds", "0-31", "--batch-size", "1")
    _generate(tiny_ckpt, tmp_path / "b16", "--seeds", "0-31", "--batch-size", "16")
    a = np.stack([np.asarray(Image.open(tmp_path / "b1" / f"seed{s:06d}.png")) for s in range(32)])
    b = np.stack([np.asarray(Image.open(tmp_path / "b16" / f"seed{s:06d}.png")) for s in range(32)])
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001


def test_truncation_and_seed_change_the_image(tiny_ckpt):
    gen = load_backend("torch", str(tiny_ckpt))
    assert isinstance(gen, Generator)
    x = gen.generate([1, 2], 0.5)
    assert x.shape == (2, 28, 28, 1) and x.dtype == np.uint8
    assert not np.array_equal(x[0], x[1])
    assert not np.array_equal(x[0], gen.generate([1], 1.5)[0])
    np.testing.assert_array_equal(x[1], gen.generate([2], 0.5)[0])


def test_grid_through_the_console_script(tiny_ckpt, tmp_path):
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-15", "--grid", tmp_path / "g.png",
                    "--prior", "uniform", "--truncation", "0.5")
    assert r.returncode == 0, r.stderr
    grid = Image.open(tmp_path / "g.png")
    assert grid.size == (4 * 30 + 2, 4 * 30 + 2) and grid.mode == "L"


def _render(ckpt, outdir, *extra):
    return gantool_cli("generate", ckpt, "--out", outdir, "--no-progress", *extra)


@pytest.mark.slow
def test_render_resumes_and_keeps_a_manifest(tiny_ckpt, tmp_path):
    out = tmp_path / "r"
    assert _render(tiny_ckpt, out, "--seeds", "0-9").returncode == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    for s in (2, 5, 7):
        (out / f"seed{s:06d}.png").unlink()
    r = _render(tiny_ckpt, out, "--seeds", "0-19", "--batch-size", "4", "--workers", "2")
    assert r.returncode == 0 and "skipped 7 already there" in r.stdout, r.stdout + r.stderr
    files = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(files) == 20 and all(files[k] == v for k, v in first.items())
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted({r["seed"] for r in rows}) == list(range(20)) and len(rows) == 23
    assert {(r["truncation"], r["prior"], r["backend"]) for r in rows} == {(None, "normal",
                                                                           "torch")}
    r = _render(tiny_ckpt, out, "--seeds", "0-3", "--truncation", "0.5")
    assert r.returncode == 2 and "truncation none, not truncation 0.5" in r.stderr


@pytest.mark.slow  # a few seconds each: the fast tier stays under 3 minutes
@pytest.mark.parametrize("fmt", ["jpg", "webp", "npy"])
def test_render_formats(tiny_ckpt, tmp_path, fmt):
    assert _render(tiny_ckpt, tmp_path / "png", "--seeds", "0-3").returncode == 0
    assert _render(tiny_ckpt, tmp_path / fmt, "--seeds", "0-3", "--format", fmt).returncode == 0
    for s in range(4):
        png = np.asarray(Image.open(tmp_path / "png" / f"seed{s:06d}.png"))
        path = tmp_path / fmt / f"seed{s:06d}.{fmt}"
        got = np.load(path)[..., 0] if fmt == "npy" else np.asarray(Image.open(path).convert("L"))
        if fmt == "npy":
            np.testing.assert_array_equal(got, png)  # the raw uint8 array
        else:
            assert np.abs(got.astype(int) - png.astype(int)).mean() < 8  # lossy, quality 95


@pytest.mark.slow
def test_encoding_threads_do_not_change_the_bytes(tiny_ckpt, tmp_path):
    for workers in ("1", "3"):
        r = _render(tiny_ckpt, tmp_path / workers, "--seeds", "0-20", "--batch-size", "5",
                    "--workers", workers)
        assert r.returncode == 0
    assert _pngs(tmp_path / "1") == _pngs(tmp_path / "3") and len(_pngs(tmp_path / "1")) == 21


def test_torch_precisions_stay_close_to_fp32(tiny_ckpt):
    from gantool.export.verify import psnr

    seeds = list(range(8))
    ref = load_backend("torch", str(tiny_ckpt)).generate(seeds, None)
    for precision in ("bf16", "fp16"):
        got = load_backend("torch", str(tiny_ckpt), precision=precision).generate(seeds, None)
        assert got.shape == ref.shape and got.dtype == np.uint8
        assert psnr(got, ref) >= 30, precision


@pytest.mark.slow
def test_torch_compile_matches_eager(tiny_ckpt):
    seeds = list(range(4))
    eager = load_backend("torch", str(tiny_ckpt)).generate(seeds, 0.8)
    compiled = load_backend("torch", str(tiny_ckpt), compile=True).generate(seeds, 0.8)
    assert np.abs(compiled.astype(int) - eager.astype(int)).max() <= 1


@pytest.mark.parametrize("args,message", [
    (["--cuda-graphs", "--device", "cpu"], "--cuda-graphs: needs a CUDA device (found none, "
                                           "or cpu asked for) (see --device)"),
    (["--backend", "onnx", "--precision", "bf16"], "--precision: only the torch backend takes "
                                                    "it, not onnx (see --backend)"),
    (["--fp16"], "--fp16: only the onnx backend takes it, not torch (see --backend)"),
    (["--precision", "fp64"], "'fp64' is not one of 'fp32', 'fp16', 'bf16'"),
])
def test_backend_option_errors(tiny_ckpt, tmp_path, args, message):
    r = gantool_cli("generate", tiny_ckpt, "--grid", tmp_path / "g.png", *args)
    assert r.returncode == 2 and message in r.stderr.strip().splitlines()[-1], r.stderr
    assert not (tmp_path / "g.png").exists()


@pytest.mark.slow
def test_truncation_sweep_grid(tiny_ckpt, tmp_path):
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-4", "--grid", tmp_path / "s.png",
                    "--prior", "uniform", "--truncation-sweep", "0.25,0.5,1", "--no-progress")
    assert r.returncode == 0, r.stderr
    grid = np.asarray(Image.open(tmp_path / "s.png"))
    assert grid.shape == (3 * 30 + 2, 5 * 30 + 2)  # 3 truncation rows x 5 seeds, 28 px + 2
    gen = load_backend("torch", str(tiny_ckpt), prior="uniform")
    np.testing.assert_array_equal(grid[2 + 30 : 2 + 30 + 28, 2 : 2 + 28],
                                  gen.generate([0], 0.5)[0, ..., 0])  # row 2, seed 0
    bad = gantool_cli("generate", tiny_ckpt, "--seeds", "0-4", "--grid", tmp_path / "b.png",
                      "--prior", "uniform", "--truncation-sweep", "0.5,2")
    assert bad.returncode == 2 and "'2'" in bad.stderr and not (tmp_path / "b.png").exists()


def test_tiny_truncation_is_one_line_not_a_stall(tiny_ckpt, tmp_path):
    """The normal prior's redraws cost ~1/t per value: t=1e-9 used to hang for ever."""
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-3", "--truncation", "1e-9",
                    "--grid", tmp_path / "g.png", timeout=120)
    assert r.returncode == 2 and "minimum 0.01" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "g.png").exists()


def _peak_rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _render_until(ckpt, out, seeds: str, files: int) -> tuple[int, float]:
    """Start a render of ``seeds``, wait until ``out`` holds ``files`` images, interrupt it
    (Ctrl-C); returns its peak memory and its start-up-to-``files`` seconds."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "gantool", "generate", str(ckpt), "--seeds",
                             seeds, "--out", str(out), "--no-progress", "--batch-size", "32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **CTRL_C_ABLE)
    start = time.perf_counter()
    try:
        while len(list(out.glob("*.png"))) < files:
            assert proc.poll() is None, proc.communicate()
            assert time.perf_counter() - start < 240, "the render wrote too little"
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        peak = _peak_rss(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        finally:  # never leave a render of 1e11 seeds running
            if proc.poll() is None:
                proc.kill()
    assert "Traceback" not in err, err
    listed = [json.loads(x)["file"] for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(listed) == sorted(p.name for p in out.glob("*.png"))  # Ctrl-C lists all
    return peak, seconds


@pytest.mark.slow
def test_a_hundred_billion_seeds_stream_and_resume(tiny_ckpt, tmp_path):
    """Seeds are drawn lazily: a render of 1e11 seeds starts at once, in bounded memory, and
    resumes after the files already there without walking the list."""
    out = tmp_path / "huge"
    peak, _ = _render_until(tiny_ckpt, out, "0-99999999999", 40)
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert peak < 1.5 * 2**30, f"peak RSS {peak / 2**20:.0f} MiB"
    _render_until(tiny_ckpt, out, "0-99999999999", len(first) + 16)
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert all(again[n] == t for n, t in first.items())  # resumed after them, not redrawn
    before = max(int(n[4:10]) for n in first)
    assert set(range(before + 1)) <= {int(n[4:10]) for n in again}  # gaps filled, in order
    print(f"1e11 seeds: peak RSS {peak / 2**20:.0f} MiB")


@pytest.mark.slow
def test_a_manifest_row_cut_by_a_kill_is_repaired_on_resume(tiny_ckpt, tmp_path):
    out = tmp_path / "r"
    assert _render(tiny_ckpt, out, "--seeds", "0-5").returncode == 0
    manifest = out / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes()[:-20])  # the last row half written
    r = _render(tiny_ckpt, out, "--seeds", "0-7")
    assert r.returncode == 0 and "skipped 6 already there" in r.stdout, r.stderr
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sorted(row["seed"] for row in rows) == list(range(8))
