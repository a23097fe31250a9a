"""DiffAugment: each transform does what it says, passes gradients, and reaches D in training."""

import pytest
import torch
from rich.console import Console

from gantool.config import AUGMENTS, augment_policy
from gantool.errors import ConfigError
from gantool.train.augment import _AUGMENTS, diff_augment
from gantool.train.trainer import Trainer

from conftest import tiny_config


def test_policy_names():
    assert set(_AUGMENTS) == set(AUGMENTS)
    assert augment_policy(" color, cutout ") == ("color", "cutout")
    assert augment_policy("") == ()
    with pytest.raises(ConfigError, match="did you mean 'translation'"):
        augment_policy("color,translaton")


def test_translation_is_an_integer_shift_with_zero_fill():
    torch.manual_seed(0)
    x = torch.arange(1, 4 * 2 * 16 * 16 + 1, dtype=torch.float).view(4, 2, 16, 16)
    y = diff_augment(x, ("translation",))
    for i in range(4):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if torch.equal(y[i], _shift(x[i], dy, dx))]
        assert len(shifts) == 1, f"image {i} is not a shift of at most 2 px"
    assert not torch.equal(x, y)


def _shift(img, dy, dx):
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        img[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def test_cutout_zeroes_one_clipped_half_size_square():
    torch.manual_seed(0)
    y = diff_augment(torch.ones(64, 1, 8, 8), ("cutout",))
    for img in y[:, 0]:
        rows, cols = (img == 0).any(1).sum().item(), (img == 0).any(0).sum().item()
        assert 1 <= rows <= 4 and 1 <= cols <= 4
        assert (img == 0).sum().item() == rows * cols  # one rectangle
    assert (y == 0).float().mean().item() > 0.15  # about a quarter of the area on average


def test_color_changes_brightness_saturation_contrast_and_passes_gradients():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 8, 8, requires_grad=True)
    y = diff_augment(x, ("color", "translation", "cutout"))
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grey = torch.rand(8, 1, 8, 8)
    torch.manual_seed(1)
    out = diff_augment(grey, ("color",))
    assert out.shape == grey.shape and not torch.allclose(out, grey)


@pytest.mark.parametrize("policy", ["", "color,translation,cutout"])
def test_discriminator_sees_augmented_real_and_fake(policy):
    cfg = tiny_config(**{"train.augment": policy, "train.steps": 1})
    trainer = Trainer(cfg, console=Console(quiet=True), progress=False)
    seen = []
    trainer.update.D.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach().clone()))
    real = trainer.real_batch(0)
    trainer.train_step(real)
    assert torch.equal(seen[0], real) == (policy == "")
