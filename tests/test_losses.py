"""Loss choices and Marchesi's extra alternating update: each option changes what happens."""

import pytest
import torch

from gantool.models.checkpoint import load_checkpoint
from gantool.train.loop import run
from gantool.train.losses import LOSSES, gradient_penalty

from conftest import tiny_config


def test_loss_values_by_hand():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-1.0, 0.5])
    d, g = LOSSES["lsgan"]
    assert d(real, fake, "hard").item() == pytest.approx(0.5 * ((1 + 0.25) / 2 + (1 + 0.25) / 2))
    assert d(real, fake, "two-sided").item() == pytest.approx(
        0.5 * ((1.1**2 + 0.4**2) / 2 + (1.1**2 + 0.4**2) / 2))
    assert g(fake).item() == pytest.approx(0.5 * (4 + 0.25) / 2)
    d, g = LOSSES["hinge"]
    assert d(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.5) / 2)
    assert g(fake).item() == pytest.approx(0.25)
    d, g = LOSSES["wgan-gp"]
    assert d(real, fake).item() == pytest.approx(-0.25 - 1.25)
    assert g(fake).item() == pytest.approx(0.25)


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x> has gradient w everywhere: the penalty is (||w|| - 1)^2 exactly."""
    w = torch.full((1, 1, 2, 2), 1.5)  # ||w|| = 3

    def critic(x):
        return (x * w).flatten(1).sum(1)

    gp = gradient_penalty(critic, torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2))
    assert gp.item() == pytest.approx(4.0)


def test_gradient_penalty_weight_reaches_the_critic(tmp_path):
    over = {"train.steps": 2, "train.sample_every": 100, "train.loss": "wgan-gp"}
    d = {}
    for weight in (0.0, 10.0):
        r = run(tiny_config(**over, **{"train.gp_weight": weight}), out=tmp_path / str(weight),
                progress=False)
        d[weight] = load_checkpoint(r.run_dir / "checkpoints" / "last.pt")["D"]
    assert any(not torch.equal(d[0.0][k], d[10.0][k]) for k in d[0.0])


def _adam_steps(ckpt, opt):
    return [int(s["step"]) for s in load_checkpoint(ckpt)[opt]["state"].values()]


@pytest.mark.slow
@pytest.mark.parametrize("nets,g_updates,d_updates", [("both", 9, 9), ("d", 6, 9), ("g", 9, 6)])
def test_extra_update_every_n_steps(tmp_path, nets, g_updates, d_updates):
    cfg = tiny_config(**{"train.steps": 6, "train.extra_update_every": 2,
                         "train.extra_update": nets, "train.sample_every": 100})
    ckpt = run(cfg, out=tmp_path, progress=False).run_dir / "checkpoints" / "last.pt"
    # 6 steps, plus one extra update at steps 2, 4 and 6 for the chosen nets.
    assert set(_adam_steps(ckpt, "opt_G")) == {g_updates}
    assert set(_adam_steps(ckpt, "opt_D")) == {d_updates}
    assert load_checkpoint(ckpt)["step"] == 6


@pytest.mark.parametrize("loss", ["lsgan", "hinge", "wgan-gp"])
def test_loss_option_changes_training(tmp_path, loss):
    over = {"train.steps": 2, "train.sample_every": 100}
    base = run(tiny_config(**over), out=tmp_path / "bce", progress=False)
    other = run(tiny_config(**over, **{"train.loss": loss}), out=tmp_path / loss, progress=False)
    a = load_checkpoint(base.run_dir / "checkpoints" / "last.pt")["G"]
    b = load_checkpoint(other.run_dir / "checkpoints" / "last.pt")["G"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_marchesis_extra_update_is_a_phase_of_the_step():
    from gantool.config import preset_config
    from gantool.train.update import phases

    main, extra = phases(preset_config("marchesi-1024").train)
    assert (main.every, main.update_d, main.update_g, main.logged) == (1, True, True, True)
    assert (extra.every, extra.update_d, extra.update_g, extra.logged) == (50, True, True, False)
    assert phases(tiny_config().train) == (main,)
