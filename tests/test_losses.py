"""Loss choices and Marchesi's extra alternating update: each option changes what happens."""

import json
import math

import pytest
import torch

from gantool.models.checkpoint import load_checkpoint
from gantool.train.loop import run
from gantool.train.losses import LOSSES, gradient_penalty, squared_gradient

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


def test_relativistic_pairing_by_hand():
    """RpGAN pairs the i-th real with the i-th fake: D softplus(f - r), G softplus(r - f)."""
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    d, g = LOSSES["rpgan"]
    softplus = [math.log1p(math.exp(v)) for v in (-2.0, 1.0, 2.0, -1.0)]
    assert d(real, fake).item() == pytest.approx((softplus[0] + softplus[1]) / 2)
    assert g(fake, real).item() == pytest.approx((softplus[2] + softplus[3]) / 2)
    # pairing, not means: the same logits in another order give another loss
    assert d(real, fake.flip(0)).item() != pytest.approx(d(real, fake).item())
    assert d(real, fake, "one-sided").item() == d(real, fake).item()  # no label targets


def test_r1_r2_against_closed_forms():
    """A linear D(x) = <w, x> has gradient w at every x: E||grad||^2 = ||w||^2; a quadratic
    D(x) = ||x||^2 / 2 has gradient x: E||grad||^2 is the batch's mean squared norm, so R1 and
    R2 differ where the real and the generated images do."""
    w = torch.full((1, 1, 2, 2), 1.5)
    x = torch.randn(4, 1, 2, 2)
    assert squared_gradient(lambda v: (v * w).flatten(1).sum(1), x).item() == pytest.approx(9.0)
    value = squared_gradient(lambda v: 0.5 * v.pow(2).flatten(1).sum(1), x)
    assert value.item() == pytest.approx(x.pow(2).flatten(1).sum(1).mean().item(), rel=1e-6)
    # kept in the graph: its gradient reaches D's parameters (here a scale a: grad of 2a^2||x||^2)
    a = torch.tensor(1.0, requires_grad=True)
    value = squared_gradient(lambda v: a * 0.5 * v.pow(2).flatten(1).sum(1), x)
    (da,) = torch.autograd.grad(value, a)
    assert da.item() == pytest.approx(2 * x.pow(2).flatten(1).sum(1).mean().item(), rel=1e-5)


@pytest.mark.slow  # four tiny runs: the fast tier stays under 3 minutes
@pytest.mark.parametrize("key", ["train.r1_gamma", "train.r2_gamma"])
def test_r1_and_r2_reach_d_and_are_logged(tmp_path, key):
    over = {"train.steps": 2, "train.sample_every": 100, "train.loss": "rpgan",
            "train.log_every": 1}
    d = {}
    for gamma in (0.0, 10.0):
        r = run(tiny_config(**over, **{key: gamma}), out=tmp_path / str(gamma), progress=False)
        d[gamma] = load_checkpoint(r.run_dir / "checkpoints" / "last.pt")["D"]
        rows = [json.loads(x) for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
        logged = key.split("_")[0].split(".")[1]  # r1 or r2
        assert all((logged in row) == (gamma > 0) for row in rows if "loss_d" in row), rows
    assert any(not torch.equal(d[0.0][k], d[10.0][k]) for k in d[0.0])


def test_a_gradient_penalty_refuses_compile_and_cuda_graphs():
    from gantool.config import validate
    from gantool.errors import ConfigError

    for over in ({"train.r1_gamma": 1.0, "train.compile": True},
                 {"train.r2_gamma": 1.0, "train.cuda_graphs": True, "train.device": "cuda"}):
        with pytest.raises(ConfigError, match="gradient penalty"):
            validate(tiny_config(**over))


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


@pytest.mark.parametrize("loss", ["lsgan", "hinge", "wgan-gp", "rpgan"])
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
