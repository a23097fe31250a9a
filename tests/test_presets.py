"""The papers' presets: their stated values, the batch-size table, and a few real steps each."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gantool.config import PRESETS, apply_overrides, preset_config, preset_names
from gantool.models import build_discriminator
from gantool.models.checkpoint import load_checkpoint, load_generator
from gantool.train.loop import run

from conftest import gantool_cli

PAPERS = ["sharma-fmnist", "sharma-faces64", "xin-anime96-baseline", "xin-anime96",
          *(f"marchesi-{r}" for r in (192, 256, 384, 512, 768, 1024))]


def test_every_paper_preset_exists():
    assert set(PAPERS) <= set(preset_names())


@pytest.mark.parametrize("name,expected", [
    ("sharma-fmnist", {"model.resolution": 28, "model.channels": 1, "train.batch_size": 32,
                       "train.lr_g": 1e-3, "train.lr_d": 1e-3, "train.betas_g": (0.5, 0.999),
                       "model.d_dropout": 0.3, "model.d_dropout_head": 0.4,
                       "train.labels": "one-sided"}),
    ("sharma-faces64", {"model.resolution": 64, "train.batch_size": 128, "train.lr_g": 2e-3,
                        "train.lr_decay_at": 40_000, "model.d_dropout_head": 0.4}),
    ("xin-anime96-baseline", {"model.resolution": 96, "train.batch_size": 128, "model.nz": 100,
                              "model.ngf": 64, "model.ndf": 64, "train.lr_g": 2e-4,
                              "train.lr_d": 2e-4, "train.betas_d": (0.5, 0.999),
                              "model.arch": "dcgan", "train.labels": "hard"}),
    ("xin-anime96", {"model.arch": "residual", "model.d_arch": "pooled", "model.res_blocks": 9,
                     "train.lr_d": 6.4e-3, "train.lr_g": 1.28e-3, "train.labels": "two-sided"}),
    ("marchesi-192", {"train.batch_size": 128, "model.prior": "uniform",
                      "model.truncation": 0.5, "train.extra_update_every": 50,
                      "train.extra_update": "both"}),
    ("marchesi-1024", {"model.resolution": 1024, "train.batch_size": 6}),
])
def test_presets_hold_the_papers_values(name, expected):
    cfg = preset_config(name)
    for key, value in expected.items():
        section, field = key.split(".")
        assert getattr(getattr(cfg, section), field) == value, key


def test_small_data_presets_augment_by_default():
    for name in preset_names():
        augmented = bool(preset_config(name).train.augment)
        small = name.startswith(("marchesi-", "few-shot")) or name == "colour-small"  # < 10k
        assert augmented == small, name


def test_batch_size_table_follows_the_resolution_unless_given():
    cfg = preset_config("marchesi-1024")
    assert apply_overrides(cfg, {"model.resolution": 512}).train.batch_size == 16
    assert apply_overrides(cfg, {"model.resolution": 640}).train.batch_size == 8  # 768's
    assert apply_overrides(cfg, {"model.resolution": 128}).train.batch_size == 128  # 192's
    assert apply_overrides(cfg, {"model.resolution": 512,
                                 "train.batch_size": 3}).train.batch_size == 3
    table = apply_overrides(cfg, {"train.batch_sizes": "1024:2,512:4"})
    assert table.train.batch_size == 2 and table.train.batch_sizes == {512: 4, 1024: 2}


def test_head_dropout_sits_right_before_the_logit():
    d = build_discriminator(preset_config("sharma-fmnist").model)
    layers = list(d.main)
    assert isinstance(layers[-2], nn.Dropout) and layers[-2].p == 0.4
    assert isinstance(layers[-1], nn.Conv2d) and layers[-1].out_channels == 1
    assert {m.p for m in layers[:-2] if isinstance(m, nn.Dropout)} == {0.3}


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """Eight small colour images (smooth random blobs), upscaled by the loader as needed."""
    folder = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    for i in range(8):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(folder / f"{i}.png")
    return folder


# the 512-1024 px ones take seconds each on CPU even this narrow: the full tier runs them
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if preset_config(n).model.resolution >= 512 else n
    for n in PRESETS])
def test_every_preset_trains_a_few_real_steps(name, tmp_path, colour_folder):
    base = preset_config(name)
    data = "builtin:fashion-mnist" if base.model.channels == 1 else str(colour_folder)
    tiny = {"model.ngf": 4, "model.ndf": 4, "model.max_channels": 16, "train.steps": 2,
            "train.batch_size": 4, "train.sample_grid": 4, "train.log_every": 1,
            "train.sample_every": 2, "train.checkpoint_every": 2, "data.path": data}
    result = run(apply_overrides(base, tiny), out=tmp_path, progress=False)
    assert result.step == 2 and not result.interrupted
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    kept = state["config"]
    for key in ("arch", "d_arch", "prior", "truncation", "d_dropout", "d_dropout_head"):
        assert kept["model"][key] == getattr(base.model, key)
    for key in ("loss", "labels", "lr_g", "lr_d", "augment", "extra_update_every"):
        assert kept["train"][key] == getattr(base.train, key)
    g, m, _, _ = load_generator(result.run_dir / "checkpoints" / "last.pt")
    with torch.no_grad():
        x = g(torch.zeros(1, m.nz))
    r = base.model.resolution
    assert x.shape == (1, base.model.channels, r, r) and torch.isfinite(x).all()


def test_list_presets_shows_key_values():
    r = gantool_cli("train", "--list-presets")
    assert r.returncode == 0
    for name in PRESETS:
        assert name in r.stdout
    text = " ".join(line.strip() for line in r.stdout.splitlines())  # wrapped at 80 columns
    for value in ("residual / pooled", "uniform t=0.5", "0.00128 / 0.0064", "6 (table)",
                  "D dropout 0.3/0.4", "extra G+D update every 50"):
        assert value in text, value
    budgets = [p.budget for p in PRESETS.values() if p.budget]
    assert budgets and all(f"for your time: {b}" in text for b in budgets)
