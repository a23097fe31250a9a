"""Run configuration: frozen dataclasses, named presets, JSON/YAML round-trip and overrides.

Precedence when a run is configured: preset < config file < ``--set``/CLI flags. Options are
validated once here, written to ``config.json`` in the run directory, then handed to the training
loop as plain values.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantool.errors import ConfigError, did_you_mean
from gantool.sampling.latent import PRIORS, validate_truncation

LABEL_SMOOTHING = ("hard", "one-sided", "two-sided")
FITS = ("crop", "pad")
AMP_MODES = ("auto", "off", "bf16", "fp16")
# torch.compile modes for training. The CUDA-graph modes (reduce-overhead, max-autotune) are left
# out: D runs several times a step and their graph trees overwrite its earlier outputs (seen on
# an H100, torch 2.11); train.cuda_graphs graphs the whole step instead.
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
DEVICES = ("auto", "cpu", "cuda")
# generator: Radford's DCGAN, Xin's residual generator, a FastGAN-style few-shot generator
ARCHS = ("dcgan", "residual", "fastgan")
# discriminator: DCGAN, Xin's (last layer twice, average pool), FastGAN's self-supervised one
D_ARCHS = ("dcgan", "pooled", "fastgan")
LOSSES = ("bce", "lsgan", "hinge", "wgan-gp")  # gantool.train.losses implements each
EXTRA_UPDATES = ("both", "d", "g")
AUGMENTS = ("color", "translation", "cutout")  # DiffAugment transforms (gantool.train.augment)
EVAL_METRICS = ("fid", "kid")  # gantool.metrics


def _table_text(table: dict[int, int]) -> str:
    return ",".join(f"{r}:{b}" for r, b in sorted(table.items()))


@dataclass(frozen=True)
class ModelConfig:
    """The generator/discriminator pair and the latent prior it was trained with."""

    arch: str = "dcgan"  # generator: dcgan | residual | fastgan
    d_arch: str = "dcgan"  # discriminator: dcgan | pooled | fastgan
    res_blocks: int = 9  # residual blocks of the residual generator
    resolution: int = 64
    channels: int = 3
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    max_channels: int = 512
    d_dropout: float = 0.0  # after every LeakyReLU of D
    d_dropout_head: float = 0.0  # one more dropout right before D's logit layer
    d_mbstd: bool = False  # minibatch standard deviation channel before D's last layer
    d_spectral_norm: bool = False  # spectral normalisation of every D convolution
    # fastgan G: FastGAN's per-pixel noise while training; drawing uses one fixed noise map per
    # layer (a buffer of the checkpoint), so an image stays a function of its z
    noise: bool = False
    prior: str = "normal"
    truncation: float | None = None  # default sampling truncation; None = the plain prior
    # class names of a conditional pair (class-conditional BatchNorm in G, projection D); empty:
    # unconditional. Filled from the data's labels when data.class_labels is on.
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are fitted to the training resolution."""

    path: str = ""
    fit: str = "crop"
    flip: bool = False
    background: tuple[int, int, int] = (255, 255, 255)
    # read class labels (class sub-folders, dataset.json, IDX labels) and train a conditional pair
    class_labels: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, bookkeeping."""

    steps: int = 10_000
    batch_size: int = 64
    # resolution -> batch size; when set, it picks batch_size for the model's resolution unless
    # batch_size itself is given (the nearest listed resolution at or above; past the end, the
    # largest listed). Marchesi: 128 images a step at 192 px down to 6 at 1024 px.
    batch_sizes: dict[int, int] = field(default_factory=dict)
    loss: str = "bce"  # bce (non-saturating) | lsgan | hinge | wgan-gp; hinge with a fastgan D
    gp_weight: float = 10.0  # gradient-penalty weight (lambda) of wgan-gp
    # a conditional pair: weight of the class loss (P2GAN's dual projection: D's projection
    # scores trained as a classifier of the real images, and G to make its fakes classify as
    # the class asked for); 0 = the plain projection discriminator
    class_loss: float = 1.0
    augment: str = ""  # DiffAugment policy for D's inputs: comma list of color,translation,cutout
    labels: str = "hard"  # hard | one-sided (real 0.9) | two-sided (real 0.9, fake 0.1)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas_g: tuple[float, float] = (0.5, 0.999)
    betas_d: tuple[float, float] = (0.5, 0.999)
    lr_gamma: float = 1.0  # exponential decay: lr = lr0 * lr_gamma ** (step / lr_gamma_every)
    lr_gamma_every: int = 1000
    lr_decay_at: int = 0  # step decay: from this step on, lr *= lr_decay_factor; 0 = off
    lr_decay_factor: float = 0.1
    extra_update_every: int = 0  # Marchesi: every N steps one more alternating update; 0 = off
    extra_update: str = "both"  # which nets that extra update trains: both | d | g
    ema_decay: float = 0.999  # 0 disables the EMA generator
    amp: str = "auto"  # auto: bf16 on GPUs that have it, else fp16 with scaling; off on CPU
    channels_last: bool | None = None  # None: on for CUDA without compile, else off
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch
    compile: bool = False  # torch.compile G and D (nn.Module.compile: checkpoints unchanged)
    compile_mode: str = "default"  # torch.compile mode: default | max-autotune-no-cudagraphs
    cuda_graphs: bool = False  # replay each step's D and G updates as one captured CUDA graph
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    sample_every: int = 0  # steps between sample grids; 0 = once per epoch
    sample_grid: int = 64  # grid of seeds 0..N-1
    checkpoint_every: int = 0  # steps between checkpoints; 0 = once per epoch
    keep: int = 5  # step checkpoints kept besides last.pt
    # Divergence guard (gantool.train.guard): on a non-finite loss, or a collapse signal held
    # for guard_patience steps, roll back to the last good checkpoint, multiply both learning
    # rates by guard_lr_factor, and stop with an error after guard_max_rollbacks rollbacks.
    tensorboard: bool = False  # also log to RUN/tensorboard (the tensorboard extra)
    eval_every: int = 0  # steps between FID/KID evaluations (metrics extra); 0 = off
    eval_metric: str = "fid"  # fid | kid: what picks checkpoints/best.pt
    eval_num: int = 1000  # generated (and real) images per evaluation
    guard: bool = True
    guard_patience: int = 200
    guard_min_spread: float = 0.05  # fake batch spread below this fraction of the real one
    # sample diversity (gantool.metrics.diversity) of seeds 0..63 drawn as samples are, every
    # diversity_every steps (0 = off), logged; the guard's collapse signal below this value
    diversity_every: int = 100
    guard_min_diversity: float = 0.2
    guard_lr_factor: float = 0.5
    guard_max_rollbacks: int = 3


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; stored in config.json and inside every checkpoint."""

    name: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return apply_overrides(cls(), _flatten(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}

PRESETS: dict[str, dict[str, Any]] = {
    "fashion-mnist": {
        "_about": "28x28 grayscale DCGAN, one-sided smoothing, G lr 5e-4 / D lr 2e-4",
        "model.resolution": 28,
        "model.channels": 1,
        "model.ngf": 64,
        "model.ndf": 64,
        "train.batch_size": 128,
        "train.labels": "one-sided",
        # Measured after one epoch on Fashion-MNIST (Frechet distance in a garment classifier's
        # features, lower is better): D dropout 0.3 and lr 2e-4/2e-4: 128 (400 steps);
        # no dropout: 85; no dropout and G lr 5e-4: 40. Dropout also costs ~40% speed on CPU.
        "train.lr_g": 5e-4,
        "train.lr_d": 2e-4,
        "train.steps": 4690,  # 10 epochs of 60k images
        "train.sample_every": 0,
        "train.checkpoint_every": 0,
    },
    "faces-64": {
        "_about": "64x64 colour DCGAN (Radford), one-sided smoothing, horizontal flips",
        "model.resolution": 64,
        "model.channels": 3,
        "train.batch_size": 128,
        "train.labels": "one-sided",
        "data.flip": True,
        "train.steps": 20_000,
        "train.sample_every": 500,
        "train.checkpoint_every": 1000,
    },
    # gantool's own recipe for 1k-10k colour images, chosen by FID against the canonical DCGAN
    # at equal steps, batch and width (benchmarks/quality.py on 3,786 Twemoji; README
    # "Colour from a few thousand images"). At 32 px, 1,500 steps, FID ratio to canonical at
    # steps 500/1000/1500: Radford's settings (faces-64) 1.07/1.04/1.02; G lr 5e-4 1.03/0.91/
    # 0.94; plus DiffAugment translation+color 0.82/0.78/0.96; plus EMA 0.99 0.82/0.78/0.92
    # (the EMA's warm-up, decay (1+s)/(10+s) at step s, rules until step 890 for 0.99 and
    # 8,990 for 0.999, so the two differ only late here); with cutout too 0.79/0.90/0.89.
    "colour-small": {
        "_about": "64 px colour from 1k-10k images: DCGAN, G lr 5e-4 / D lr 2e-4, DiffAugment "
                  "translation+color, EMA 0.99, one-sided 0.9, flips, batch 64",
        "model.resolution": 64,
        "model.channels": 3,
        "train.batch_size": 64,
        "train.lr_g": 5e-4,
        "train.lr_d": 2e-4,
        "train.labels": "one-sided",
        "train.augment": "translation,color",
        "train.ema_decay": 0.99,
        "data.flip": True,
        "train.steps": 10_000,
        "train.sample_every": 500,
        "train.checkpoint_every": 1000,
    },
    # Sharma 2021, "DCGAN review" (papers/sharma-2021-dcgan-review): tables 4.3.1 and 4.4.1.
    "sharma-fmnist": {
        "_about": "Sharma: 28x28 grey, batch 32, Adam 1e-3 b1 0.5, D dropout 0.3/0.4, "
                  "one-sided 0.9, 20 epochs",
        "model.resolution": 28,
        "model.channels": 1,
        "model.d_dropout": 0.3,
        "model.d_dropout_head": 0.4,
        "train.batch_size": 32,
        "train.lr_g": 1e-3,
        "train.lr_d": 1e-3,
        "train.labels": "one-sided",
        "train.steps": 37_500,  # 20 epochs of 60,000 images
    },
    "sharma-faces64": {
        "_about": "Sharma: 64x64 colour faces, batch 128, Adam 2e-3 b1 0.5, decay at step "
                  "40k, D dropout 0.3/0.4, one-sided 0.9",
        "model.resolution": 64,
        "model.channels": 3,
        "model.d_dropout": 0.3,
        "model.d_dropout_head": 0.4,
        "train.batch_size": 128,
        "train.lr_g": 2e-3,
        "train.lr_d": 2e-3,
        "train.lr_decay_at": 40_000,  # the paper names the step, not the factor: ours is 0.1
        "train.lr_decay_factor": 0.1,
        "train.labels": "one-sided",
        "train.steps": 80_000,
        "train.sample_every": 1000,
        "train.checkpoint_every": 2000,
    },
    # Xin, "Fast and High-resolution Image Generation Based on Improved DCGAN": tables 2 and 3.
    "xin-anime96-baseline": {
        "_about": "Xin's baseline (experiment 5): 96x96 DCGAN, batch 128, lr 2e-4 both, "
                  "betas 0.5/0.999, hard labels",
        "model.resolution": 96,
        "model.channels": 3,
        "model.nz": 100,
        "model.ngf": 64,
        "model.ndf": 64,
        "train.batch_size": 128,
        "train.lr_g": 2e-4,
        "train.lr_d": 2e-4,
        "train.labels": "hard",
        "train.steps": 7_800,  # 100 epochs of 10,000 images
        "train.sample_every": 500,
        "train.checkpoint_every": 1000,
    },
    "xin-anime96": {
        "_about": "Xin's improved DCGAN (experiment 8): residual G, pooled D, D lr 6.4e-3, "
                  "G lr 1.28e-3, two-sided 0.9/0.1, batch 24",
        "model.resolution": 96,
        "model.channels": 3,
        "model.arch": "residual",
        "model.d_arch": "pooled",
        "train.batch_size": 24,  # the paper lowered it from 128 for memory in this experiment
        "train.lr_g": 1.28e-3,
        "train.lr_d": 6.4e-3,
        "train.labels": "two-sided",
        "train.steps": 41_600,  # 100 epochs of 10,000 images
        "train.sample_every": 500,
        "train.checkpoint_every": 1000,
    },
    # FastGAN (Liu et al. 2021), gantool/models/fastgan.py. few-shot: gantool's recipe for
    # 1k-10k images at 64-256 px, at widths a CPU trains; the FID comparison at equal wall-clock
    # is benchmarks/quality.py (README "Few-shot generator").
    "few-shot": {
        "_about": "choose for 1k-10k images at 64-256 px (use --resolution): FastGAN-style G "
                  "(GLU upsampling, skip-layer excitation) and self-supervised D, hinge, "
                  "DiffAugment translation+color, EMA, flips, batch 8, lr 5e-4, ngf = ndf = 8 "
                  "for CPUs (raise both on a GPU); FID 0.76x colour-small's at equal time "
                  "at 64 px, 0.65-0.72x at 128 px (two seeds)",
        "model.arch": "fastgan",
        "model.d_arch": "fastgan",
        "model.resolution": 64,
        "model.channels": 3,
        "model.nz": 256,
        # chosen at equal wall-clock on 2 CPU cores (64 px Twemoji, benchmarks/quality.py):
        # widths 8 over 16 (185 vs 193 FID in 2,625 and 954 steps), lr 5e-4 over the
        # paper's 2e-4 (143 vs 185)
        "model.ngf": 8,
        "model.ndf": 8,
        "model.max_channels": 1024,
        "model.d_spectral_norm": True,
        "train.loss": "hinge",
        "train.batch_size": 8,  # the paper's; more steps in the same time on a CPU
        "train.lr_g": 5e-4,
        "train.lr_d": 5e-4,
        "train.augment": "translation,color",
        "train.ema_decay": 0.999,
        "data.flip": True,
        "train.steps": 10_000,
        "train.sample_every": 500,
        "train.checkpoint_every": 1000,
    },
}

# The paper's 1024 px configuration: few-shot at FastGAN's own widths (ngf = ndf = 64, 1024
# channels at 4x4) and length (50k iterations at batch 8).
PRESETS["few-shot-1024"] = {
    **PRESETS["few-shot"],
    "_about": "choose for 512-1024 px on a GPU: FastGAN's 1024 px configuration for ~1k images, "
              "ngf = ndf = 64, nz 256, batch 8, lr 2e-4, hinge, DiffAugment, EMA 0.999, 50k "
              "steps; half marchesi-1024's multiply-adds per image",
    "model.resolution": 1024,
    "model.ngf": 64,
    "model.ndf": 64,
    "train.lr_g": 2e-4,
    "train.lr_d": 2e-4,
    "train.steps": 50_000,
    "train.sample_every": 1000,
    "train.checkpoint_every": 5000,
}

# Marchesi 2017, "Megapixel size image creation using GANs": DCGAN from 192 to 1024 px on under
# 2k images. The paper gives the batch size at both ends (128 at 192 px, 6 at 1024 px); the
# sizes between are ours, roughly inversely proportional to the pixel count.
MARCHESI_BATCH_SIZES = {192: 128, 256: 64, 384: 32, 512: 16, 768: 8, 1024: 6}
for _res in MARCHESI_BATCH_SIZES:
    PRESETS[f"marchesi-{_res}"] = {
        "_about": f"Marchesi 2017: {_res} px DCGAN for under 2k images; batch table "
                  f"{_table_text(MARCHESI_BATCH_SIZES)}; samples with uniform z in [-0.5, 0.5]",
        "model.resolution": _res,
        "model.channels": 3,
        "model.prior": "uniform",
        "model.truncation": 0.5,
        "train.batch_sizes": MARCHESI_BATCH_SIZES,
        "train.extra_update_every": 50,
        "train.extra_update": "both",
        "train.augment": "color,translation,cutout",  # under 2k images
        "data.flip": True,
        "train.steps": 20_000,
        "train.sample_every": 500,
        "train.checkpoint_every": 1000,
    }


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_config(name: str) -> RunConfig:
    """The RunConfig of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; "
                          "see --list-presets")
    values = {k: v for k, v in PRESETS[name].items() if not k.startswith("_")}
    return apply_overrides(RunConfig(name=name), values)


def preset_summary(name: str) -> dict[str, str]:
    """The key values of a preset as short strings, for ``gantool train --list-presets``."""
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
    loss = t.loss if t.loss in ("hinge", "wgan-gp") else f"{t.loss} {t.labels}"  # no targets
    return {"preset": name, "size": f"{m.resolution}x{m.resolution}x{m.channels}",
            "G / D": f"{m.arch} / {m.d_arch}", "batch": batch,
            "lr G / D": f"{t.lr_g:g} / {t.lr_d:g}", "loss": loss, "z": z,
            "steps": f"{t.steps:,}", "tricks": ", ".join(tricks) or "-"}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML config file into flat ``section.field`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot parse config file {path}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options")
    return _flatten(data)


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return ``cfg`` with ``{"section.field" or "field": value}`` applied and validated.

    String values (from the command line) are parsed to the field's type.
    """
    sections = {s: dataclasses.asdict(getattr(cfg, s)) for s in SECTIONS}
    name = cfg.name
    for key, value in overrides.items():
        if key == "name":
            name = str(value)
            continue
        section, fname = _resolve_key(key)
        ftype = _field_types(SECTIONS[section])[fname]
        sections[section][fname] = _coerce(value, ftype, key)
    given = {_resolve_key(k) for k in overrides if k != "name"}
    if (("model", "d_arch") in given and sections["model"]["d_arch"] == "fastgan"
            and ("train", "loss") not in given and sections["train"]["loss"] == "bce"):
        sections["train"]["loss"] = "hinge"  # the loss a fastgan D is made for, unless named
    table = sections["train"]["batch_sizes"]
    if table and ("train", "batch_size") not in given:
        sections["train"]["batch_size"] = batch_for(table, sections["model"]["resolution"])
    try:
        new = RunConfig(name=name, **{s: SECTIONS[s](**v) for s, v in sections.items()})
    except TypeError as e:
        raise ConfigError(str(e)) from None
    validate(new)
    return new


def batch_for(table: dict[int, int], resolution: int) -> int:
    """The batch size a resolution -> batch table gives: the entry at the nearest listed
    resolution at or above ``resolution``, or the largest listed one's past the end."""
    above = [r for r in sorted(table) if r >= resolution]
    return table[above[0] if above else max(table)]



def parse_set_options(items: list[str]) -> dict[str, str]:
    """Parse ``--set key=value`` items."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set train.lr_g=1e-4)")
        out[key.strip()] = value.strip()
    return out


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]


CHOICES = {"model.arch": ARCHS, "model.d_arch": D_ARCHS, "model.prior": PRIORS,
           "data.fit": FITS, "train.labels": LABEL_SMOOTHING, "train.loss": LOSSES,
           "train.extra_update": EXTRA_UPDATES, "train.eval_metric": EVAL_METRICS,
           "train.amp": AMP_MODES, "train.compile_mode": COMPILE_MODES, "train.device": DEVICES}
AT_LEAST_ONE = ("model.nz", "model.ngf", "model.ndf", "model.max_channels", "model.res_blocks",
                "train.steps", "train.batch_size", "train.log_every", "train.lr_gamma_every",
                "train.keep", "train.guard_patience")
NOT_NEGATIVE = ("train.sample_every", "train.sample_grid", "train.checkpoint_every",
                "train.seed", "train.extra_update_every", "train.lr_decay_at",
                "train.guard_max_rollbacks", "train.eval_every", "train.guard_min_spread",
                "train.diversity_every", "train.guard_min_diversity", "train.gp_weight",
                "train.class_loss")
FRACTIONS = ("model.d_dropout", "model.d_dropout_head", "train.ema_decay")  # in [0, 1)


def validate(cfg: RunConfig) -> None:
    """Range and choice checks; raises ConfigError with one readable line."""
    if (not cfg.name.strip() or cfg.name in (".", "..") or len(cfg.name) > 100
            or any(c in cfg.name for c in "/\\\0")):
        raise ConfigError(f"run name {cfg.name[:100]!r} must be a plain folder name of at most "
                          "100 characters, without / or \\ (e.g. faces-64-try2)")
    _check_fields(cfg, ("data", "train"))
    validate_model(cfg.model)
    _validate_train(cfg.train)
    if cfg.model.classes and cfg.train.cuda_graphs:
        raise ConfigError("train.cuda_graphs does not train conditional pairs yet; drop one of "
                          "--set train.cuda_graphs=true and --conditional")
    background = cfg.data.background
    if len(background) != 3 or not all(0 <= c <= 255 for c in background):
        raise ConfigError(f"data.background must be three values 0..255, got {list(background)}")


def validate_model(m: ModelConfig) -> None:
    """The model section's checks alone (what drawing from a checkpoint needs)."""
    _check_fields(RunConfig(model=m), ("model",))
    if m.channels not in (1, 3):
        raise ConfigError(f"model.channels must be 1 or 3, got {m.channels}")
    if m.noise and m.arch != "fastgan":
        raise ConfigError(f"model.noise needs model.arch=fastgan (got {m.arch})")
    names = [str(c).strip() for c in m.classes]
    if m.classes and (len(set(names)) != len(names) or not all(names) or len(names) < 2):
        raise ConfigError(f"model.classes must be two or more distinct, non-empty names, got "
                          f"{list(m.classes)[:10]}")
    try:
        validate_truncation(m.truncation, m.prior)
    except ValueError as e:
        raise ConfigError(f"model.truncation: {e}") from None


def model_config(stored: dict[str, Any]) -> ModelConfig:
    """The ``model`` section of a stored configuration (a checkpoint's), read and checked on its
    own: drawing from a checkpoint does not depend on the training options of the version
    that wrote it. ConfigError for a missing section or an unknown or bad model field."""
    section = stored.get("model") if isinstance(stored, dict) else None
    if not isinstance(section, dict):
        raise ConfigError("the configuration has no model section")
    types_ = _field_types(ModelConfig)
    for key in section:
        if key not in types_:
            raise ConfigError(f"unknown option 'model.{key}' (a newer gantool's model?)")
    m = ModelConfig(**{k: _coerce(v, types_[k], f"model.{k}") for k, v in section.items()})
    validate_model(m)
    return m


def _check_fields(cfg: RunConfig, sections: tuple[str, ...]) -> None:
    """The table-driven checks (choices, ranges) of the keys in ``sections``."""
    def ours(key: str) -> bool:
        return key.partition(".")[0] in sections

    for key, choices in CHOICES.items():
        if ours(key):
            _choice(key, _get(cfg, key), choices)
    for keys, ok, must in ((AT_LEAST_ONE, lambda v: v >= 1, "be at least 1"),
                           (NOT_NEGATIVE, lambda v: v >= 0, "not be negative"),
                           (FRACTIONS, lambda v: 0 <= v < 1, "be in [0, 1)")):
        for key in filter(ours, keys):
            if not ok(_get(cfg, key)):
                raise ConfigError(f"{key} must {must}, got {_get(cfg, key)}")


def _validate_train(t: TrainConfig) -> None:
    """The training section's checks that are more than a range."""
    if any(r < 1 or b < 1 for r, b in t.batch_sizes.items()):
        raise ConfigError(f"train.batch_sizes must map resolutions to batch sizes >= 1, got "
                          f"{_table_text(t.batch_sizes)}")
    if t.eval_num < 2:
        raise ConfigError(f"train.eval_num must be at least 2, got {t.eval_num}")
    if not 0 < t.guard_lr_factor <= 1:
        raise ConfigError(f"train.guard_lr_factor must be in (0, 1], got {t.guard_lr_factor}")
    if t.cuda_graphs and (t.compile or t.loss == "wgan-gp" or t.amp == "fp16"
                          or t.device == "cpu"):
        raise ConfigError("train.cuda_graphs captures plain eager steps on a CUDA device: it "
                          "cannot run with train.compile, the wgan-gp loss, fp16 autocast (its "
                          "gradient scaler reads values back every step) or --device cpu")
    if t.compile and t.loss == "wgan-gp":
        raise ConfigError("train.compile cannot run wgan-gp: torch.compile has no double "
                          "backward for its gradient penalty; use another loss or compile off")
    augment_policy(t.augment)
    if min(t.lr_g, t.lr_d, t.lr_gamma, t.lr_decay_factor) <= 0:
        raise ConfigError("learning rates, train.lr_gamma and train.lr_decay_factor must be "
                          "positive")
    for key, betas in [("train.betas_g", t.betas_g), ("train.betas_d", t.betas_d)]:
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"{key} must be two numbers in [0, 1), got {list(betas)}")


def _get(cfg: RunConfig, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def augment_policy(text: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); "" -> (); ConfigError on unknown names."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    for n in names:
        _choice("train.augment", n, AUGMENTS)
    return names


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{key} must be one of {', '.join(choices)}, got {value!r}"
            f"{did_you_mean(value, choices)}"
        )


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k in SECTIONS and not prefix:
            out.update(_flatten(v, f"{k}."))
        else:
            out[key] = v
    return out


def _resolve_key(key: str) -> tuple[str, str]:
    if "." in key:
        section, _, fname = key.partition(".")
        if section in SECTIONS and fname in _field_types(SECTIONS[section]):
            return section, fname
    else:
        owners = [s for s, c in SECTIONS.items() if key in _field_types(c)]
        if len(owners) == 1:
            return owners[0], key
    bare = {k.partition(".")[2]: k for k in all_keys()}
    close = difflib.get_close_matches(key.rpartition(".")[2], list(bare), n=1)
    hint = f" (did you mean {bare[close[0]]!r}?)" if close else ""
    raise ConfigError(f"unknown option {key!r}{hint}; options are section.field, e.g. train.lr_g")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, ftype: Any, key: str) -> Any:
    """Convert ``value`` (possibly a CLI string) to ``ftype``."""
    origin = typing.get_origin(ftype)
    args = typing.get_args(ftype)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    try:
        if origin is dict:  # "192:128,1024:6" or a mapping; keys and values are ints here
            pairs = ([p.split(":") for p in value.split(",") if p.strip()]
                     if isinstance(value, str) else list(dict(value).items()))
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected resolution:batch pairs, e.g. 192:128,1024:6")
            return {_coerce(k, args[0], key): _coerce(v, args[1], key) for k, v in pairs}
        if origin is tuple and args[-1] is Ellipsis:  # names: a list, or "a,b,c" ("" none)
            items = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
            return tuple(_coerce(v, args[0], key) for v in items)
        if origin is tuple:
            items = value.replace("(", "").replace(")", "").split(",") if isinstance(
                value, str) else list(value)
            if len(items) != len(args):
                raise ValueError(f"expected {len(args)} comma-separated values")
            return tuple(_coerce(v, a, key) for v, a in zip(items, args))
        return _scalar(value, ftype)
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(f"bad value {value!r} for {key}: {e}") from None


def _scalar(value: Any, ftype: type) -> Any:
    """``value`` as a bool, int, float or str; ValueError says what was expected."""
    if ftype is bool:
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if isinstance(value, bool) or isinstance(value, (dict, list)):  # YAML `steps: true`
        raise ValueError(f"expected {'text' if ftype is str else 'a number'}")
    if ftype is int:
        text = str(value).replace("_", "")
        if not text.lstrip("+-").isdigit() and not (
                isinstance(value, float) and value.is_integer()):
            raise ValueError("expected an integer")
        return int(value) if isinstance(value, float) else int(text)
    if ftype is float:
        number = float(value)
        if not math.isfinite(number):  # nan would pass every range check below
            raise ValueError("expected a finite number")
        return number
    return str(value)
