"""Named configurations: each a table of option values with what it is for, where its values
come from, and what was measured when they were chosen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gantool.config.checks import table_text
from gantool.config.parse import apply_overrides
from gantool.config.schema import RunConfig, TrainConfig
from gantool.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Preset:
    """``about``: when to choose it (the CLI lists it); ``source``: the paper or benchmark
    its values come from, with what was measured; ``values``: ``section.field`` -> value;
    ``budget``: what it gives for the time one has, where that was measured (the CLI lists
    it too)."""

    about: str
    source: str
    values: dict[str, Any] = field(default_factory=dict)
    budget: str = ""


# Marchesi 2017 gives the batch size at both ends (128 at 192 px, 6 at 1024 px); the sizes
# between are ours, roughly inversely proportional to the pixel count.
MARCHESI_BATCH_SIZES = {192: 128, 256: 64, 384: 32, 512: 16, 768: 8, 1024: 6}

FEW_SHOT = {
    "model.arch": "fastgan", "model.d_arch": "fastgan", "model.resolution": 64,
    "model.channels": 3, "model.nz": 256, "model.ngf": 8, "model.ndf": 8,
    "model.max_channels": 1024, "model.d_spectral_norm": True, "train.loss": "hinge",
    "train.batch_size": 8, "train.lr_g": 5e-4, "train.lr_d": 5e-4,
    "train.augment": "translation,color", "train.ema_decay": 0.999, "data.flip": True,
    "train.steps": 10_000, "train.checkpoint_every": 1000,
}

PRESETS: dict[str, Preset] = {
    "fashion-mnist": Preset(
        "28x28 grayscale DCGAN, one-sided smoothing, G lr 5e-4 / D lr 2e-4",
        "measured after one epoch on Fashion-MNIST (Frechet distance in a garment classifier's "
        "features, lower is better): D dropout 0.3 and lr 2e-4/2e-4: 128 (400 steps); no "
        "dropout: 85; no dropout and G lr 5e-4: 40; dropout also costs ~40% speed on CPU; "
        "4,690 steps are 10 epochs of 60k images",
        {"model.resolution": 28, "model.channels": 1, "model.ngf": 64, "model.ndf": 64,
         "train.batch_size": 128, "train.labels": "one-sided", "train.lr_g": 5e-4,
         "train.lr_d": 2e-4, "train.steps": 4690, "train.checkpoint_every": 0}),
    "faces-64": Preset(
        "64x64 colour DCGAN (Radford), one-sided smoothing, horizontal flips",
        "the DCGAN paper's settings (Radford, Metz and Chintala; arXiv 2015, ICLR 2016)",
        {"model.resolution": 64, "model.channels": 3, "train.batch_size": 128,
         "train.labels": "one-sided", "data.flip": True, "train.steps": 20_000,
         "train.checkpoint_every": 1000}),
    "colour-small": Preset(
        "64 px colour from 1k-10k images: DCGAN, G lr 5e-4 / D lr 2e-4, DiffAugment "
        "translation+color, EMA 0.99, one-sided 0.9, flips, batch 64",
        "gantool's own, chosen by FID against the canonical DCGAN at equal steps, batch and "
        "width (benchmarks/quality.py on 3,786 Twemoji). At 32 px, 1,500 steps, FID ratio to "
        "canonical at steps 500/1000/1500: Radford's settings (faces-64) 1.07/1.04/1.02; G lr "
        "5e-4 1.03/0.91/0.94; plus DiffAugment translation+color 0.82/0.78/0.96; plus EMA 0.99 "
        "0.82/0.78/0.92 (the EMA's warm-up, decay (1+s)/(10+s) at step s, rules until step 890 "
        "for 0.99 and 8,990 for 0.999, so the two differ only late here); with cutout too "
        "0.79/0.90/0.89",
        {"model.resolution": 64, "model.channels": 3, "train.batch_size": 64,
         "train.lr_g": 5e-4, "train.lr_d": 2e-4, "train.labels": "one-sided",
         "train.augment": "translation,color", "train.ema_decay": 0.99, "data.flip": True,
         "train.steps": 10_000, "train.checkpoint_every": 1000},
        budget="at 64 px on 2 CPU cores (Twemoji) behind few-shot to an hour, tied with "
               "it from 80 min: FID 262/171/119/105 at 10/30/60/120 min against few-shot's "
               "140/121/112/101; cleaner faces, fewer kinds (docs/quality.md)"),
    "sharma-fmnist": Preset(
        "Sharma: 28x28 grey, batch 32, Adam 1e-3 b1 0.5, D dropout 0.3/0.4, one-sided 0.9, "
        "20 epochs",
        "Sharma 2021, \"DCGAN review\" (papers/sharma-2021-dcgan-review), table 4.3.1; 37,500 "
        "steps are 20 epochs of 60,000 images",
        {"model.resolution": 28, "model.channels": 1, "model.d_dropout": 0.3,
         "model.d_dropout_head": 0.4, "train.batch_size": 32, "train.lr_g": 1e-3,
         "train.lr_d": 1e-3, "train.labels": "one-sided", "train.steps": 37_500}),
    "sharma-faces64": Preset(
        "Sharma: 64x64 colour faces, batch 128, Adam 2e-3 b1 0.5, decay at step 40k, D dropout "
        "0.3/0.4, one-sided 0.9",
        "Sharma 2021, table 4.4.1; the paper names the decay's step, not its factor: ours is 0.1",
        {"model.resolution": 64, "model.channels": 3, "model.d_dropout": 0.3,
         "model.d_dropout_head": 0.4, "train.batch_size": 128, "train.lr_g": 2e-3,
         "train.lr_d": 2e-3, "train.lr_decay_at": 40_000, "train.lr_decay_factor": 0.1,
         "train.labels": "one-sided", "train.steps": 80_000, "train.checkpoint_every": 2000}),
    "xin-anime96-baseline": Preset(
        "Xin's baseline (experiment 5): 96x96 DCGAN, batch 128, lr 2e-4 both, betas "
        "0.5/0.999, hard labels",
        "Xin, \"Fast and High-resolution Image Generation Based on Improved DCGAN\", tables 2 "
        "and 3; 7,800 steps are 100 epochs of 10,000 images",
        {"model.resolution": 96, "model.channels": 3, "model.nz": 100, "model.ngf": 64,
         "model.ndf": 64, "train.batch_size": 128, "train.lr_g": 2e-4, "train.lr_d": 2e-4,
         "train.labels": "hard", "train.steps": 7_800, "train.checkpoint_every": 1000}),
    "xin-anime96": Preset(
        "Xin's improved DCGAN (experiment 8): residual G, pooled D, D lr 6.4e-3, G lr 1.28e-3, "
        "two-sided 0.9/0.1, batch 24",
        "Xin, tables 2 and 3; the paper lowered the batch from 128 to 24 for memory in this "
        "experiment; 41,600 steps are 100 epochs of 10,000 images",
        {"model.resolution": 96, "model.channels": 3, "model.arch": "residual",
         "model.d_arch": "pooled", "train.batch_size": 24, "train.lr_g": 1.28e-3,
         "train.lr_d": 6.4e-3, "train.labels": "two-sided", "train.steps": 41_600,
         "train.checkpoint_every": 1000}),
    "few-shot": Preset(
        "choose for 1k-10k images at 64-256 px (use {resolution}): FastGAN-style G (GLU "
        "upsampling, skip-layer excitation) and self-supervised D, hinge, DiffAugment "
        "translation+color, EMA, flips, batch 8, lr 5e-4, ngf = ndf = 8 for CPUs (raise both on "
        "a GPU); FID 0.76x colour-small's at equal time at 64 px, 0.65-0.72x at 128 px (two "
        "seeds)",
        "FastGAN (Liu et al. 2021), gantool/models/fastgan.py, at widths a CPU trains; chosen at "
        "equal wall-clock on 2 CPU cores (64 px Twemoji, benchmarks/quality.py): widths 8 over "
        "16 (185 vs 193 FID in 2,625 and 954 steps), lr 5e-4 over the paper's 2e-4 (143 vs "
        "185); batch 8 is the paper's (more steps in the same time on a CPU)",
        FEW_SHOT,
        budget="at 64 px on 2 CPU cores (Twemoji) the best of three to 70 min: FID "
               "140/121/112/101 at 10/30/60/120 min, heads with eyes from 10 min; ahead of "
               "colour-small to an hour, tied with it from 80 min (docs/quality.md)"),
    "few-shot-1024": Preset(
        "choose for 512-1024 px on a GPU: FastGAN's 1024 px configuration for ~1k images, "
        "ngf = ndf = 64, nz 256, batch 8, lr 2e-4, hinge, DiffAugment, EMA 0.999, 50k steps; "
        "half marchesi-1024's multiply-adds per image",
        "FastGAN's own widths (ngf = ndf = 64, 1024 channels at 4x4) and length (50k "
        "iterations at batch 8)",
        {**FEW_SHOT, "model.resolution": 1024, "model.ngf": 64, "model.ndf": 64,
         "train.lr_g": 2e-4, "train.lr_d": 2e-4, "train.steps": 50_000,
         "train.checkpoint_every": 5000}),
    **{f"marchesi-{res}": Preset(
        f"Marchesi 2017: {res} px DCGAN for under 2k images; batch table "
        f"{table_text(MARCHESI_BATCH_SIZES)}; samples with uniform z in [-0.5, 0.5]",
        "Marchesi 2017, \"Megapixel size image creation using GANs\": DCGAN from 192 to 1024 px "
        "on under 2k images; the batch sizes between the paper's two ends are ours",
        {"model.resolution": res, "model.channels": 3, "model.prior": "uniform",
         "model.truncation": 0.5, "train.batch_sizes": MARCHESI_BATCH_SIZES,
         "train.extra_update_every": 50, "train.extra_update": "both",
         "train.augment": "color,translation,cutout", "data.flip": True, "train.steps": 20_000,
         "train.checkpoint_every": 1000})
       for res in MARCHESI_BATCH_SIZES},
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_config(name: str) -> RunConfig:
    """The RunConfig of a named preset; ConfigError for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}")
    return apply_overrides(RunConfig(name=name), PRESETS[name].values)


def preset_sets(key: str) -> bool:
    """Whether some preset sets the option ``key`` (its default then depends on the preset)."""
    return any(key in p.values for p in PRESETS.values())


def preset_summary(name: str) -> dict[str, str]:
    """The key values of a preset as short strings, for a listing of the presets."""
    c = preset_config(name)
    m, t = c.model, c.train
    tricks = []
    if m.d_dropout or m.d_dropout_head:
        tricks.append(f"D dropout {m.d_dropout:g}/{m.d_dropout_head:g}")
    if t.extra_update_every:
        nets = {"both": "G+D", "d": "D", "g": "G"}[t.extra_update]
        tricks.append(f"extra {nets} update every {t.extra_update_every}")
    if t.augment:
        tricks.append("DiffAugment")
    if t.ema_decay != TrainConfig.ema_decay:
        tricks.append(f"EMA {t.ema_decay:g}" if t.ema_decay else "no EMA")
    if t.lr_decay_at:
        tricks.append(f"lr x{t.lr_decay_factor:g} at step {t.lr_decay_at:,}")
    if c.data.flip:
        tricks.append("flips")
    z = m.prior + (f" t={m.truncation:g}" if m.truncation is not None else "")
    batch = f"{t.batch_size}" + (" (table)" if t.batch_sizes else "")
    loss = t.loss if t.loss in ("hinge", "wgan-gp", "rpgan") else f"{t.loss} {t.labels}"
    return {"preset": name, "size": f"{m.resolution}x{m.resolution}x{m.channels}",
            "G / D": f"{m.arch} / {m.d_arch}", "batch": batch,
            "lr G / D": f"{t.lr_g:g} / {t.lr_d:g}", "loss": loss, "z": z,
            "steps": f"{t.steps:,}", "tricks": ", ".join(tricks) or "-"}
