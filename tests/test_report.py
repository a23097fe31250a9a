"""`gantool report`: a real run (with a divergence-guard rollback) turned into an HTML page."""

import re

import pytest

from gantool.train.loop import run

from conftest import gantool_cli, tiny_config


@pytest.mark.slow
def test_report_of_a_run_with_a_rollback(tmp_path):
    cfg = tiny_config(**{"train.steps": 12, "train.lr_g": 1.0, "train.lr_d": 1.0,
                         "train.log_every": 2, "train.guard_patience": 4,
                         "train.guard_lr_factor": 1e-3, "train.checkpoint_every": 4,
                         "train.sample_every": 4})
    run_dir = run(cfg, out=tmp_path, progress=False).run_dir
    forged = run_dir / "samples" / "step-<img src=x onerror=alert(1)>.png"
    forged.write_bytes((run_dir / "samples" / "step-0000004.png").read_bytes())
    r = gantool_cli("report", run_dir)
    assert r.returncode == 0, r.stderr
    page = (run_dir / "report" / "index.html").read_text()
    for name in ("losses", "discriminator", "spread", "learning-rates"):
        assert (run_dir / "report" / f"{name}.png").stat().st_size > 1000
    grids = len(list((run_dir / "samples").glob("step-*.png")))
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4 + grids
    assert "divergence-guard events: 1" in page
    assert "generator collapse" in page or "discriminator wins" in page
    assert "&quot;lr_g&quot;: 1.0" in page  # the run's configuration, escaped
    assert "<img src=x" not in page and "step-&lt;img src=x onerror=alert(1)&gt;" in page
    for fact in ("wall time", "training images/s: median", "device: cpu, precision: float32"):
        assert fact in page, fact
    assert 'onclick="this.classList.toggle' in page and 'name="viewport"' in page
    # a page written elsewhere stands alone: no plot files beside it
    elsewhere = tmp_path / "pages" / "run.html"
    r = gantool_cli("report", run_dir, "--out", elsewhere)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in elsewhere.parent.iterdir()] == ["run.html"]
    assert len(re.findall(r'src="data:image/png;base64,', elsewhere.read_text())) == 4 + grids


def test_report_needs_a_run_directory(tmp_path):
    r = gantool_cli("report", tmp_path)
    assert r.returncode == 2 and "no metrics.jsonl" in r.stderr
