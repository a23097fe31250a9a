"""Sample diversity: real images score about 1, a collapsed generator near 0 even when it puts
different noise on every sample (which the batch spread counts as variety); the training log
carries it and the divergence guard rolls a collapsed run back on it."""

import json

import numpy as np
import pytest
import torch
from rich.console import Console

from gantool.data import load_dataset
from gantool.metrics.diversity import diversity, nearest_distance
from gantool.train.guard import DivergenceGuard
from gantool.train.trainer import Trainer
from gantool.train.update import batch_spread

from conftest import TWEMOJI_TAR, tiny_config


@pytest.fixture(scope="module")
def emoji():
    if not TWEMOJI_TAR.is_file():
        pytest.skip("needs ../shared/data/twemoji-64")
    return load_dataset(TWEMOJI_TAR, 64, 3, progress=False).images.transpose(0, 2, 3, 1)  # NHWC


def test_real_images_score_one_and_a_noisy_collapse_scores_near_zero(emoji):
    rng = np.random.default_rng(0)
    real = nearest_distance(emoji[rng.choice(len(emoji), 64, replace=False)])
    other = emoji[rng.choice(len(emoji), 64, replace=False)]
    assert diversity(other, real) == pytest.approx(1.0, abs=0.2)
    # one emoji 64 times, each with its own strong per-pixel noise: a "different" image per
    # seed by the per-pixel batch spread, the same picture to the eye
    one = emoji[7].astype(np.float32)
    noisy = np.clip(one + rng.normal(0, 40, size=(64, *one.shape)), 0, 255).astype(np.uint8)
    spread = noisy.astype(np.float32).std(0).mean() / other.astype(np.float32).std(0).mean()
    assert spread > 0.3  # the guard's spread signal (below 0.05) would not fire
    assert diversity(noisy, real) < 0.15  # the guard acts below 0.2
    four = np.repeat(other[:4], 16, axis=0)  # four pictures for 64 seeds
    assert diversity(four, real) == pytest.approx(0.0, abs=1e-6)
    half = np.concatenate([np.repeat(other[:1], 32, axis=0), other[32:]])
    assert 0.3 < diversity(half, real) < 0.7
    assert diversity(np.repeat(other[:1], 64, axis=0), real) == pytest.approx(0.0, abs=1e-6)


def test_layout_checks(emoji):
    nchw = emoji[:8].transpose(0, 3, 1, 2)
    assert nearest_distance(nchw, channels_last=False) == pytest.approx(
        nearest_distance(emoji[:8]))
    with pytest.raises(ValueError):
        nearest_distance(emoji[:1])


def test_guard_watches_diversity_only_once_the_run_was_varied():
    g = DivergenceGuard(patience=20, min_spread=0.05, watch_d=True, min_diversity=0.2)
    healthy = {"loss_d": 1.2, "loss_g": 0.9, "d_real": 0.7, "d_fake": 0.4, "spread": 0.3}
    for _ in range(5):  # early samples are all alike: no signal before the run got varied
        assert g.observe({**healthy, "diversity": 0.05}, 10) is None and g.healthy
    assert g.observe({**healthy, "diversity": 0.6}, 10) is None
    assert g.observe({**healthy, "diversity": 0.1}, 10) is None and not g.healthy
    assert g.observe(healthy, 10).startswith("generator collapse (sample diversity 0.100")
    assert g.observe(healthy, 10) is None, "the old value is not reused after a rollback"


@pytest.mark.slow
def test_a_run_forced_into_collapse_is_rolled_back_on_diversity(tmp_path):
    """From step 100 on, G is forced (by a forward hook) to draw only 4 pictures for all the z
    of a batch: the batch spread stays healthy, the sample diversity collapses, and the guard
    rolls back on it. The tiny network's samples reach a diversity of about 0.13 by step 100,
    so the threshold is 0.05 here (armed once 0.1 was reached)."""
    cfg = tiny_config(**{"train.steps": 160, "train.diversity_every": 10,
                         "train.guard_patience": 20, "train.checkpoint_every": 20,
                         "train.ema_decay": 0.0, "train.sample_every": 1000,
                         "train.guard_min_diversity": 0.05})
    trainer = Trainer(cfg, Console(stderr=True, quiet=True), progress=False)

    def collapse(module, inputs, out):
        if trainer.rollbacks == 0 and trainer.step >= 100:
            forced = out[torch.arange(len(out)) % 4]
            spreads.append(float(batch_spread(forced)))
            return forced
        return None

    spreads = []

    trainer.update.G.register_forward_hook(collapse)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    assert trainer.fit(run_dir).step == 160
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in rows if r.get("event")]
    assert len(events) == 1 and "sample diversity" in events[0]["reason"], events
    real_spread = float(batch_spread(trainer.real_batch(0)))
    assert min(spreads) / real_spread > 0.05, "the spread signal (below 0.05) would not fire"
    logs = [r for r in rows if not r.get("event")]
    assert all(("diversity" in r) == (r["step"] % 10 == 0) for r in logs)
    measured = [r["diversity"] for r in logs if "diversity" in r]
    assert max(measured) > 0.1 and measured[-1] > 0.05, "healthy before and after"
