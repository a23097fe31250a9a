"""Latent walks and `gantool video`: the path math, keyframes equal to `gantool generate` on
torch and ONNX Runtime, real FFmpeg videos read back, animations, resumable frame folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantool.errors import GantoolError
from gantool.export import parse_formats
from gantool.export.pipeline import export_checkpoint
from gantool.latent import latents
from gantool.sampling.video import WalkFrames, write_video
from gantool.sampling.walk import lerp, make_walk, slerp

from conftest import gantool_cli

NZ = 100


# ---- the path math -----------------------------------------------------------------------
@pytest.mark.parametrize("prior,truncation", [("normal", None), ("normal", 0.7),
                                              ("uniform", 0.5), ("uniform", None)])
@pytest.mark.parametrize("loop", [True, False])
def test_keyframes_are_the_seeds_own_latents(prior, truncation, loop):
    seeds = [5, 9, 2, 40, 7, 11]
    walk = make_walk(seeds, 2, 7, NZ, prior, truncation, loop)
    assert walk.frames == (3 * 7 if loop else 2 * 7 + 1)
    z = walk.latents(range(walk.frames))  # (frames, cells, nz)
    assert z.dtype == np.float32 and z.shape == (walk.frames, 2, NZ)
    keys = latents(seeds, NZ, prior, truncation).reshape(2, 3, NZ)
    for k in range(3):
        assert z[k * 7].tobytes() == keys[:, k].tobytes(), "bit for bit the seed's z"
    if not loop:
        assert z[-1].tobytes() == keys[:, 2].tobytes(), "an open walk ends on its last seed"
    else:  # the last frame is one step before the first keyframe again
        path = (slerp if prior == "normal" else lerp)(keys[:, 2], keys[:, 0], 6 / 7)
        if truncation is not None:
            path = np.clip(path, -truncation, truncation)
        np.testing.assert_allclose(path, z[-1], atol=1e-6)


def test_spherical_path_keeps_its_norm_profile_and_constant_angular_speed():
    a, b = latents([1, 2], NZ, "normal")
    s = np.linspace(0, 1, 41)
    path = slerp(a, b, s)  # (41, nz)
    na, nb = np.linalg.norm(a.astype(np.float64)), np.linalg.norm(b.astype(np.float64))
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), (1 - s) * na + s * nb, rtol=1e-9)
    unit = path / np.linalg.norm(path, axis=1, keepdims=True)
    steps = np.arccos(np.clip(np.sum(unit[1:] * unit[:-1], axis=1), -1, 1))
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-6)
    np.testing.assert_allclose(path[[0, -1]], np.stack([a, b]), atol=1e-6)
    # A straight line would sag to about 1/sqrt(2) of the norm halfway; the sphere does not.
    assert np.linalg.norm((a + b) / 2) < 0.8 * min(na, nb) < np.linalg.norm(path[20])


def test_parallel_keyframes_do_not_divide_by_zero():
    a = latents([3], NZ, "normal")[0]
    path = slerp(a, 2 * a, np.array([0.0, 0.5, 1.0]))
    assert np.isfinite(path).all()
    np.testing.assert_allclose(path[1], 1.5 * a, rtol=1e-6)


@pytest.mark.parametrize("prior,t", [("uniform", 0.4), ("uniform", 1.0), ("normal", 0.6)])
def test_a_truncated_walk_never_leaves_the_box(prior, t):
    walk = make_walk(list(range(24)), 3, 16, NZ, prior, t)
    z = walk.latents(range(walk.frames))
    assert np.abs(z).max() <= np.float32(t)  # as the seeds' own z, rounded to float32
    if prior == "uniform":  # straight: halfway is the average of the two keyframes
        keys = latents(list(range(24)), NZ, prior, t).reshape(3, 8, NZ)
        np.testing.assert_allclose(z[8], (keys[:, 0] + keys[:, 1]) / 2, atol=1e-6)


@pytest.mark.parametrize("seeds,cells,message", [
    (list(range(7)), 2, "do not split evenly over 2 walks"),
    ([4, 5], 2, "at least 2 seeds"),
])
def test_walk_errors(seeds, cells, message):
    with pytest.raises(ValueError, match=message):
        make_walk(seeds, cells, 10, NZ, "normal", None)


# ---- frames from real backends -----------------------------------------------------------
def _video(*args, ok=True):
    r = gantool_cli("video", *args, "--no-progress")
    if ok:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def _images(folder: Path, names) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / n)) for n in names])


@pytest.fixture(scope="module")
def onnx_dir(tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "onnx"
    export_checkpoint(tiny_ckpt, out, parse_formats("onnx"), log=lambda s: None)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_every_keyframe_is_generates_image_byte_for_byte(tiny_ckpt, onnx_dir, tmp_path, backend):
    model = tiny_ckpt if backend == "torch" else onnx_dir
    common = ["--backend", backend, "--batch-size", "1", "--truncation", "0.8"]
    _video(model, "--seeds", "3,1,4,15", "--frames-per-seed", "5", "--frames-dir",
           tmp_path / "frames", *common)
    r = gantool_cli("generate", model, "--seeds", "3,1,4,15", "--out", tmp_path / "seeds",
                    *common, "--no-progress")
    assert r.returncode == 0, r.stderr
    frames = sorted(p.name for p in (tmp_path / "frames").glob("frame*.png"))
    assert frames == [f"frame{i:06d}.png" for i in range(20)]
    for k, seed in enumerate([3, 1, 4, 15]):
        assert ((tmp_path / "frames" / f"frame{5 * k:06d}.png").read_bytes()
                == (tmp_path / "seeds" / f"seed{seed:06d}.png").read_bytes())
    between = _images(tmp_path / "frames", frames[1:5])
    assert len({im.tobytes() for im in between}) == 4, "frames between keyframes all differ"
    rows = [json.loads(line) for line in (tmp_path / "frames" / "manifest.jsonl").open()]
    assert sorted(r["frame"] for r in rows) == list(range(20))
    assert rows[0]["walk"] == {"seeds": "3,1,4,15", "grid": "1x1", "loop": True,
                               "frames_per_seed": 5}


def test_mp4_frame_count_and_size_read_back(tiny_ckpt, tmp_path):
    import imageio_ffmpeg

    out = tmp_path / "sub" / "walk.mp4"
    r = _video(tiny_ckpt, "--seeds", "0-11", "--grid", "3x2", "--frames-per-seed", "8",
               "--fps", "24", "--out", out)
    assert "wrote" in r.stdout and "frames/s" in r.stdout
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert tuple(meta["size"]) == (3 * 28, 2 * 28) and meta["fps"] == 24
    frames = [np.frombuffer(f, np.uint8).reshape(56, 84, 3) for f in reader]
    assert len(frames) == 2 * 8  # 2 keyframes per walk, looping
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 16
    # Lossy, but frame 0 is still recognisably the grid of the walks' first seeds.
    from gantool.backends import load_backend

    first = load_backend("torch", str(tiny_ckpt)).generate([0, 2, 4, 6, 8, 10], None)
    tiles = first[..., 0].reshape(2, 3, 28, 28).transpose(0, 2, 1, 3).reshape(56, 84)
    error = np.abs(frames[0][..., 0].astype(int) - tiles.astype(int)).mean()
    assert error < 12, f"mean abs error {error:.1f} of 255"
    assert not list(out.parent.glob(".*tmp*")), "no temporary file left"


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_gif_and_webp_loops(tiny_ckpt, tmp_path):
    for name in ("loop.gif", "loop.webp"):
        _video(tiny_ckpt, "--seeds", "0-3", "--frames-per-seed", "3", "--fps", "10", "--out",
               tmp_path / name)
        with Image.open(tmp_path / name) as im:
            assert im.size == (28, 28) and im.info.get("loop") == 0
            durations = []
            for i in range(im.n_frames):  # identical neighbours may be merged: time adds up
                im.seek(i)
                im.load()
                durations.append(im.info["duration"])
            assert sum(durations) == 12 * 100, durations


@pytest.mark.slow
def test_frames_dir_resumes_and_refuses_another_walk(tiny_ckpt, tmp_path):
    args = [tiny_ckpt, "--seeds", "0-5", "--frames-per-seed", "4", "--grid", "2x1"]
    _video(*args, "--frames-dir", tmp_path / "whole")
    _video(*args, "--frames-dir", tmp_path / "part")
    part = tmp_path / "part"
    for n in (3, 7, 10):
        (part / f"frame{n:06d}.png").unlink()
    manifest = part / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:5]) + lines[5][:20])  # a row cut by a kill
    r = _video(*args, "--frames-dir", part)
    assert "wrote 3 frame(s)" in r.stdout and "skipped 9 already there" in r.stdout
    whole = sorted(p.name for p in (tmp_path / "whole").glob("frame*.png"))
    assert whole == sorted(p.name for p in part.glob("frame*.png")) and len(whole) == 12
    assert (_images(tmp_path / "whole", whole) == _images(part, whole)).all()
    listed = {json.loads(line)["frame"] for line in manifest.open()}
    assert listed == set(range(12)), "every frame listed, the cut row's too"
    r = _video(tiny_ckpt, "--seeds", "0-5", "--frames-per-seed", "5", "--grid", "2x1",
               "--frames-dir", part, ok=False)
    assert r.returncode == 2 and "holds images rendered with" in r.stderr
    assert "frames_per_seed': 4" in r.stderr and len(list(part.glob("frame*"))) == 12


def test_an_interrupted_video_leaves_no_file(tiny_ckpt, tmp_path):
    from gantool.backends import load_backend

    class Interrupted(WalkFrames):
        def generate(self, frames, truncation=None):
            if frames[0] >= 8:
                raise KeyboardInterrupt
            return super().generate(frames, truncation)

    gen = load_backend("torch", str(tiny_ckpt))
    source = Interrupted(gen, make_walk(list(range(4)), 1, 6, gen.nz, gen.prior, None))
    for name in ("walk.mp4", "walk.gif"):
        with pytest.raises(KeyboardInterrupt):
            write_video(source, tmp_path / name, batch_size=4, progress=False)
    assert list(tmp_path.iterdir()) == [], "nothing left: no video, no temp file"


@pytest.mark.parametrize("args,message", [
    (["--seeds", "0-6", "--grid", "2x1", "--out", "w.mp4"], "do not split evenly"),
    (["--seeds", "0-3", "--grid", "4by2", "--out", "w.mp4"], "write COLSxROWS"),
    (["--out", "w.avi1"], "write a video (.mp4"),
    (["--out", "w.mp4", "--frames-dir", "f"], "either --out FILE"),
    (["--out", "w.mp4", "--codec", "libx2644"], "did you mean 'libx264'"),
    (["--out", "w.mp4", "--truncation", "0.001"], "below the normal prior's minimum"),
])
def test_user_errors_are_one_line(tiny_ckpt, tmp_path, args, message):
    r = gantool_cli("video", tiny_ckpt, *args, "--no-progress", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing written"


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_mp4_without_the_video_extra_is_an_install_hint(tiny_ckpt, tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['imageio_ffmpeg'] = None\n")
    r = gantool_cli("video", tiny_ckpt, "--seeds", "0-1", "--frames-per-seed", "2", "--out",
                    tmp_path / "w.mp4", env_extra={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2 and "pip install 'gantool[video]'" in r.stderr, r.stderr
    assert not (tmp_path / "w.mp4").exists()
    r = gantool_cli("video", tiny_ckpt, "--seeds", "0-1", "--frames-per-seed", "2", "--out",
                    tmp_path / "w.gif", env_extra={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0 and (tmp_path / "w.gif").is_file(), r.stderr


def test_walk_frames_tile_cells_in_row_order(tiny_ckpt):
    from gantool.backends import load_backend

    gen = load_backend("torch", str(tiny_ckpt))
    walk = make_walk(list(range(12)), 6, 3, gen.nz, gen.prior, None)
    frame = WalkFrames(gen, walk, cols=3).generate([0])[0]  # (56, 84, 1)
    seeds = gen.generate([0, 2, 4, 6, 8, 10], None)
    for cell in range(6):
        r, c = divmod(cell, 3)
        tile = frame[28 * r : 28 * r + 28, 28 * c : 28 * c + 28]
        assert np.abs(tile.astype(int) - seeds[cell].astype(int)).max() <= 1
    with pytest.raises(ValueError, match="rows of 4"):
        WalkFrames(gen, walk, cols=4)


def test_check_video_path_is_a_gantool_error():
    from gantool.sampling.video import check_video_path

    with pytest.raises(GantoolError):
        check_video_path(Path("x.png"))
    assert check_video_path(Path("x.MP4")) == "ffmpeg"


def test_sigterm_during_a_video_leaves_no_file(tiny_ckpt, tmp_path):
    """A preempted `gantool video --out walk.mp4`: exit 143, no video, no temp file."""
    args = [sys.executable, "-m", "gantool", "video", str(tiny_ckpt), "--seeds", "0-399",
            "--frames-per-seed", "30", "--out", str(tmp_path / "walk.mp4"), "--no-progress"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".walk.*.tmp.mp4")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and err.strip().endswith("terminated (SIGTERM)"), err
    assert list(tmp_path.iterdir()) == [], "nothing left: no video, no temp file"
