"""The divergence guard fires on runs made to diverge, rolls back, and finishes or stops clearly."""

import json
import math

import pytest
import torch

from gantool.models.checkpoint import load_checkpoint
from gantool.train.guard import DivergenceGuard
from gantool.train.loop import run
from gantool.train.run_files import step_checkpoints, step_of

from conftest import gantool_cli, tiny_config

HEALTHY = {"loss_d": 1.2, "loss_g": 0.9, "d_real": 0.7, "d_fake": 0.4, "spread": 0.3}


def test_signals_need_patience_but_nan_fires_at_once():
    g = DivergenceGuard(patience=10, min_spread=0.05, watch_d=True)
    assert g.observe(HEALTHY, 5) is None and g.healthy
    collapsed = {**HEALTHY, "spread": 0.01}
    assert g.observe(collapsed, 5) is None and not g.healthy
    assert "generator collapse" in g.observe(collapsed, 5)
    assert g.observe({**HEALTHY, "d_real": 0.999, "d_fake": 0.001}, 5) is None
    assert g.observe(HEALTHY, 5) is None and g.healthy  # a healthy window resets the streak
    assert "non-finite loss" in g.observe({**HEALTHY, "loss_g": math.nan}, 1)
    assert "non-finite loss" in g.observe({**HEALTHY, "loss_d": math.inf}, 1)
    wins = {**HEALTHY, "d_real": 0.999, "d_fake": 0.001}
    g.observe(wins, 5)
    assert "discriminator wins" in g.observe(wins, 5)
    hinge = DivergenceGuard(patience=1, min_spread=0.05, watch_d=False)
    assert hinge.observe(wins, 5) is None  # D(x)/D(G(z)) thresholds are for BCE only


DIVERGE = {"train.lr_g": 1.0, "train.lr_d": 1.0, "train.log_every": 2, "train.guard_patience": 4,
           "train.checkpoint_every": 4, "train.sample_every": 100, "train.keep": 10}


def _rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_rollback_lowers_the_learning_rate_and_the_run_finishes(tmp_path):
    """lr 1.0 collapses the tiny GAN within a few steps; one rollback to x1e-3 saves it."""
    cfg = tiny_config(**DIVERGE, **{"train.steps": 16, "train.guard_lr_factor": 1e-3})
    result = run(cfg, out=tmp_path, progress=False)
    assert result.step == 16 and not result.interrupted
    rows = _rows(result.run_dir)
    events = [r for r in rows if r.get("event")]
    assert len(events) == 1 and events[0]["event"] == "rollback"
    assert events[0]["rollbacks"] == 1 and events[0]["lr_scale"] == pytest.approx(1e-3)
    assert events[0]["step"] < events[0]["at_step"] and events[0]["step"] % 4 == 0
    assert "collapse" in events[0]["reason"] or "discriminator wins" in events[0]["reason"]
    after = [r for r in rows if not r.get("event") and r["step"] > events[0]["step"]]
    assert after and all(r["lr_g"] == pytest.approx(1e-3) for r in after)
    steps = [r["step"] for r in rows if not r.get("event")]
    assert steps == sorted(steps), "rows of the abandoned trajectory are dropped"
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert state["guard"] == {"rollbacks": 1, "lr_scale": pytest.approx(1e-3)}
    assert all(torch.isfinite(v).all() for v in state["G"].values())
    # resuming keeps the lowered rate
    more = run(resume=result.run_dir, steps=20, progress=False)
    last = [r for r in _rows(more.run_dir) if not r.get("event")][-1]
    assert last["step"] == 20 and last["lr_g"] == pytest.approx(1e-3)


@pytest.mark.slow
def test_guard_stops_after_max_rollbacks_with_a_clear_message(tmp_path):
    r = gantool_cli("train", "--data", "builtin:fashion-mnist", "--resolution", "28",
                    "--channels", "1", "--ngf", "8", "--ndf", "8", "--batch-size", "16",
                    "--steps", "40", "--lr-g", "1", "--lr-d", "1", "--out", tmp_path,
                    "--no-progress", "--sample-every", "100", "--checkpoint-every", "4",
                    "--set", "train.log_every=2", "--set", "train.guard_patience=4",
                    "--set", "train.guard_max_rollbacks=1", "--set", "train.keep=10")
    assert r.returncode != 0
    last_line = r.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: training diverged 2 times") and "Traceback" not in r.stderr
    assert "last good checkpoint" in last_line and "divergence guard:" in r.stderr
    run_dir = next(tmp_path.iterdir())
    ckpts = step_checkpoints(run_dir / "checkpoints")
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert step_of(ckpts[0]) == state["step"], "nothing from a diverged trajectory is kept"
    assert state["guard"]["rollbacks"] == 2
    assert [e["event"] for e in _rows(run_dir) if e.get("event")] == ["rollback", "stop"]


def test_guard_off_lets_the_run_diverge(tmp_path):
    cfg = tiny_config(**DIVERGE, **{"train.steps": 16, "train.guard": False})
    rows = _rows(run(cfg, out=tmp_path, progress=False).run_dir)
    assert not any(r.get("event") for r in rows)
    assert rows[-1]["spread"] < 0.05  # collapsed, and nobody intervened
