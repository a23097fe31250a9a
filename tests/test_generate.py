"""`gantool generate`: reproducible images by seed and truncation."""

import os
import stat

import numpy as np
from PIL import Image

from gantool.backends import Generator, load_backend
from gantool.cli.main import main

from conftest import gantool_cli


def _generate(ckpt, outdir, *extra):
    try:
        main(["generate", str(ckpt), "--outdir", str(outdir), "--no-progress", *extra])
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
