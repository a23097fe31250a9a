"""One real epoch on the full Fashion-MNIST training set draws recognisable garments."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from gantool.backends import load_backend
from gantool.config import apply_overrides, preset_config
from gantool.latent import latents
from gantool.models import build_generator
from gantool.sampling.images import to_uint8
from gantool.train.loop import run

from conftest import FASHION_MNIST
from garments import GarmentJudge

pytestmark = pytest.mark.slow  # the whole module: make test-fast skips it

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

SEEDS = list(range(1000))


@pytest.mark.skipif(not (FASHION_MNIST / "train-labels-idx1-ubyte.gz").exists(),
                    reason="needs the Fashion-MNIST IDX files in ../shared/data/fashion-mnist")
def test_one_epoch_draws_garments(tmp_path):
    judge = GarmentJudge(FASHION_MNIST)
    assert judge.accuracy > 0.8
    cfg = apply_overrides(preset_config("fashion-mnist"), {"data.path": str(FASHION_MNIST)})
    steps = 60_000 // cfg.train.batch_size  # one epoch
    cfg = apply_overrides(cfg, {"train.steps": steps})

    torch.manual_seed(cfg.train.seed)
    untrained = build_generator(cfg.model).eval()
    with torch.no_grad():
        z = torch.from_numpy(latents(SEEDS, cfg.model.nz))
        before = judge.score(to_uint8(untrained(z).numpy()))

    result = run(cfg, out=tmp_path, console=Console(quiet=True), progress=False)
    after = judge.score(load_backend("torch", str(result.run_dir / "checkpoints" / "last.pt"))
                        .generate(SEEDS, None))
    print(f"one epoch ({steps} steps): before {before}, after {after}")
    assert after["frechet"] < 0.35 * before["frechet"], (before, after)
    assert after["classes"] >= 8, after  # varied garments, not one mode
    assert after["confidence"] > before["confidence"] + 0.1
    assert np.isfinite(after["frechet"])


def test_the_quality_benchmark_trains_both_sides_and_scores_every_checkpoint(tmp_path):
    """``benchmarks/quality.py`` end to end, tiny (4 steps, networks of width 8, on the bundled
    sample, FID of 16 vs 16): the canonical DCGAN and a gantool preset each trained in its own
    process, every checkpoint of both scored, the JSON written. The quality claim it measures
    (``colour-small`` below 0.9x the canonical FID at 400 steps, 32 px, on Twemoji) is a
    benchmark run, not a CI test: the command is in benchmarks/README.md."""
    out = tmp_path / "quality"
    r = subprocess.run([sys.executable, str(BENCH / "quality.py"), "--data",
                        "builtin:fashion-mnist", "--resolution", "32", "--width", "8",
                        "--batch", "16", "--steps", "4", "--checkpoints", "2", "--num", "16",
                        "--presets", "colour-small", "--out", str(out),
                        "--json", str(out / "result.json")],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "GANTOOL_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == {"canonical": 4, "colour-small": 4}
    fid = result["fid"]
    assert set(fid) == {"canonical", "colour-small"}, fid
    for row in fid.values():
        assert set(row) == {"2", "4"} and all(np.isfinite(v) and v > 0 for v in row.values()), fid
    assert "ratio to canonical" in r.stdout


def test_the_budget_benchmark_keeps_an_earlier_machines_line(tmp_path):
    """``benchmarks/budget.py --score-only`` where a contender has no checkpoint (its run was
    on another machine): its line comes from the earlier ``--json`` record, FID, steps and
    training loads alike, and is drawn, and its grid cells from those kept beside the sheet; a
    record of another ``--num`` is not mixed in."""
    record = {"args": {"resolution": 64, "num": 1000, "seed": 0}, "load_average": [2.0],
              "training_load_average": {"canonical": {"10": 1.95}, "few-shot": {"10": 2.01}},
              "fid": {"canonical": {"10": 317.5}, "few-shot": {"10": 173.4, "20": 128.4}},
              "steps": {"canonical": {"10": 603}, "few-shot": {"10": 2639, "20": 5312}},
              "best": {"10": "few-shot", "20": "few-shot"}}
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))

    def score_only(*extra):
        return subprocess.run([sys.executable, str(BENCH / "budget.py"), "--data", "unused",
                               "--score-only", "--contenders", "canonical,few-shot", "--out",
                               str(tmp_path / "empty"), "--json", str(path), *extra],
                              capture_output=True, text=True, timeout=300)

    cells = tmp_path / "grids"  # the cells an earlier run's sheet (grids.png) was made of
    cells.mkdir()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(cells / "few-shot-010min.png")
    r = score_only("--figure", str(tmp_path / "fid.png"), "--grids", str(tmp_path / "grids.png"),
                   "--grid-minutes", "10,120")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "canonical: no checkpoint in" in r.stdout
    sheet = Image.open(tmp_path / "grids.png").convert("RGB")
    assert sheet.size == (90 + 2 * 28, 18 + 2 * 28)  # 2 contenders x 2 marks of 20 px cells
    assert sheet.getpixel((90 + 10, 18 + 28 + 10)) == (255, 0, 0)  # few-shot's row, 10 min
    assert sheet.getpixel((90 + 28 + 10, 18 + 28 + 10)) == (255, 255, 255)  # no 120 cell
    assert "load average at the end of each training segment: 1.95-2.01" in r.stdout
    rewritten = json.loads(path.read_text())
    for key in ("fid", "steps", "training_load_average", "best"):
        assert rewritten[key] == record[key], key
    assert (tmp_path / "fid.png").stat().st_size > 0

    r = score_only("--num", "500")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(path.read_text())["fid"] == {"canonical": {}, "few-shot": {}}
