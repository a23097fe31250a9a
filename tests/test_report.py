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
    assert "divergence-guard events: 1" in page and "holds no sample grid" not in page
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


def test_report_names_the_checkpointed_step_and_says_why_there_are_no_grids(tmp_path):
    """A run stopped at step 95 that logged metrics every 10 steps (37 steps an epoch): the
    page names step 95, its epoch to 2 decimals and the last logged step; with no sample grid
    in samples/, it says why instead of an empty section."""
    import torch

    from gantool.config import ModelConfig, RunConfig
    from gantool.models import build_generator
    from gantool.models.checkpoint import record
    from gantool.report import write_report
    from gantool.train.run_files import save_checkpoint
    from gantool.train.runlog import RunLog

    run_dir = tmp_path / "00001-stopped"
    run_dir.mkdir()
    log = RunLog(run_dir)
    for step in range(10, 100, 10):
        log.write({"step": step, "epoch": round(step / 37, 4), "loss_d": 1.0, "loss_g": 2.0,
                   "d_real": 0.6, "d_fake": 0.4, "spread": 0.9, "lr_g": 2e-4, "lr_d": 2e-4,
                   "images_per_s": 50.0, "time": 1000.0 + step})
    cfg = RunConfig(model=ModelConfig(nz=16, ngf=4, max_channels=16))
    g = build_generator(cfg.model)
    for step in (80, 95):  # as training writes them: step files, last.pt the newest
        save_checkpoint(record(config=cfg.to_dict(), step=step, G=g.state_dict(), G_ema=None),
                        run_dir / "checkpoints", keep=5)
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 95
    page = write_report(run_dir).read_text()
    assert "<li>step 95 (epoch 2.57); metrics logged to step 90</li>" in page
    assert "steps logged" not in page and "epoch 2.4324" not in page
    samples = page.split("<h2>Samples over time</h2>")[1].split("<h2>")[0]
    assert samples == ("<p>samples/ holds no sample grid: training writes one at its first "
                       "step, on the train.sample_every cadence and when it stops.</p>\n")
    for path in (run_dir / "checkpoints").iterdir():  # a run stopped before its first one
        path.unlink()
    page = write_report(run_dir).read_text()
    assert "<li>step 90 (epoch 2.43), as last logged; no checkpoint yet</li>" in page


def test_report_needs_a_run_directory(tmp_path):
    r = gantool_cli("report", tmp_path)
    assert r.returncode == 2 and "no metrics.jsonl" in r.stderr
