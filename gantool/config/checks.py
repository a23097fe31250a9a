"""Checks of a whole configuration: the declared ones (choices, ranges) and those between
options. Each failure is a ConfigError with one readable line."""

from __future__ import annotations

import re
from typing import Any

from gantool.config.schema import (
    AUGMENTS,
    IMPORTED_ARCHS,
    PSI_ARCHS,
    ModelConfig,
    RunConfig,
    TrainConfig,
    options,
)
from gantool.errors import ConfigError, did_you_mean
from gantool.latent import NETWORK_TRUNCATION, validate_truncation


def validate(cfg: RunConfig) -> None:
    """Every check of a run's configuration."""
    if (not cfg.name.strip() or cfg.name in (".", "..") or len(cfg.name) > 100
            or any(c in cfg.name for c in "/\\\0")):
        raise ConfigError(f"run name {cfg.name[:100]!r} must be a plain folder name of at most "
                          "100 characters, without / or \\ (e.g. faces-64-try2)")
    check_declared(cfg, ("data", "train"))
    validate_model(cfg.model)
    if cfg.model.arch in IMPORTED_ARCHS:
        raise ConfigError(f"model.arch {cfg.model.arch} is an imported generator (gantool "
                          "import): gantool draws from it but trains dcgan, residual and fastgan")
    _validate_train(cfg.train)
    if cfg.model.classes and cfg.train.cuda_graphs:
        raise ConfigError("train.cuda_graphs does not train conditional pairs yet; drop one of "
                          "train.cuda_graphs and data.class_labels")
    background = cfg.data.background
    if len(background) != 3 or not all(0 <= c <= 255 for c in background):
        raise ConfigError(f"data.background must be three values 0..255, got {list(background)}")


def validate_model(m: ModelConfig) -> None:
    """The model section's checks alone (what drawing from a checkpoint needs)."""
    check_declared(RunConfig(model=m), ("model",))
    if (m.prior in NETWORK_TRUNCATION) != (m.arch in PSI_ARCHS):
        raise ConfigError(f"model.prior {m.prior} does not go with model.arch {m.arch}: the "
                          f"{', '.join(NETWORK_TRUNCATION)} prior is for imported StyleGAN "
                          "generators, whose network applies the truncation")
    if m.arch_params and m.arch not in IMPORTED_ARCHS:
        raise ConfigError(f"model.arch_params is for imported generators, not {m.arch}")
    if m.noise and m.arch != "fastgan":
        raise ConfigError(f"model.noise needs model.arch=fastgan (got {m.arch})")
    names = [str(c).strip() for c in m.classes]
    if m.classes and (len(set(names)) != len(names) or not all(names) or len(names) < 2):
        raise ConfigError(f"model.classes must be two or more distinct, non-empty names, got "
                          f"{list(m.classes)[:10]}")
    if m.class_counts and (len(m.class_counts) != len(m.classes)
                           or min(m.class_counts) < 0 or sum(m.class_counts) < 1):
        raise ConfigError(f"model.class_counts must hold one count >= 0 per class of "
                          f"model.classes ({len(m.classes)}), got {list(m.class_counts)[:10]}")
    try:
        validate_truncation(m.truncation, m.prior)
    except ValueError as e:
        raise ConfigError(f"model.truncation: {e}") from None


def check_declared(cfg: RunConfig, sections: tuple[str, ...]) -> None:
    """The checks the schema declares (choices, smallest values, fractions) of the options in
    ``sections``."""
    for o in options():
        if o.key.partition(".")[0] not in sections:
            continue
        value = _get(cfg, o.key)
        if o.choices:
            choice(o.key, value, o.choices)
        if o.at_least is not None and not value >= o.at_least:
            must = "not be negative" if o.at_least == 0 else f"be at least {o.at_least}"
            raise ConfigError(f"{o.key} must {must}, got {value}")
        if o.fraction and not 0 <= value < 1:
            raise ConfigError(f"{o.key} must be in [0, 1), got {value}")


def _validate_train(t: TrainConfig) -> None:
    """The training section's checks that are more than a declared range."""
    if any(r < 1 or b < 1 for r, b in t.batch_sizes.items()):
        raise ConfigError(f"train.batch_sizes must map resolutions to batch sizes >= 1, got "
                          f"{table_text(t.batch_sizes)}")
    if not 0 < t.guard_lr_factor <= 1:
        raise ConfigError(f"train.guard_lr_factor must be in (0, 1], got {t.guard_lr_factor}")
    penalized = t.loss == "wgan-gp" or t.r1_gamma > 0 or t.r2_gamma > 0  # double backward
    if t.cuda_graphs and (t.compile or penalized or t.amp == "fp16" or t.device == "cpu"):
        raise ConfigError("train.cuda_graphs captures plain eager steps on a CUDA device: it "
                          "cannot run with train.compile, a gradient penalty (wgan-gp, R1, R2), "
                          "fp16 autocast (its gradient scaler reads values back every step) or "
                          "the cpu device")
    if t.compile and penalized:
        raise ConfigError("train.compile cannot run a gradient penalty (wgan-gp, R1, R2): "
                          "torch.compile has no double backward for it; turn the penalty or "
                          "compile off")
    augment_policy(t.augment)
    sample_cadence(t.sample_every)
    if min(t.lr_g, t.lr_d, t.lr_gamma, t.lr_decay_factor) <= 0:
        raise ConfigError("learning rates, train.lr_gamma and train.lr_decay_factor must be "
                          "positive")
    for key, betas in [("train.betas_g", t.betas_g), ("train.betas_d", t.betas_d)]:
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"{key} must be two numbers in [0, 1), got {list(betas)}")


def augment_policy(text: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); "" -> (); ConfigError on unknown names."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    for n in names:
        choice("train.augment", n, AUGMENTS)
    return names


DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
                      r"(?:(\d+(?:\.\d+)?)s)?")


def duration(text: str) -> float | None:
    """"90m", "11h30m", "1d2h", "45s" or Slurm's "H:MM:SS" / "MM:SS" -> seconds; None for text
    that is none of those, or no time at all."""
    text = str(text).strip().lower()
    seconds = None
    plain = text.isascii()  # \d, int() and float() read other scripts' digits; not here
    if plain and ":" in text and all(p.isdigit() for p in text.split(":")) and text.count(":") <= 2:
        seconds = sum(int(p) * 60**i for i, p in enumerate(reversed(text.split(":"))))
    elif plain and text and (m := DURATION.fullmatch(text)):
        seconds = sum(float(v or 0) * unit for v, unit in zip(m.groups(), (86400, 3600, 60, 1)))
    return seconds or None


def sample_cadence(text: str) -> tuple[str, float]:
    """``train.sample_every`` -> ("auto", 0), ("steps", N) (0: each epoch) or ("time", seconds);
    ConfigError for anything else."""
    text = str(text).strip().lower()
    if text == "auto":
        return "auto", 0
    if text.isascii() and text.isdigit():
        return "steps", int(text)
    seconds = duration(text) if not text.isdigit() else None
    if seconds is None:
        raise ConfigError(f"train.sample_every must be a number of steps, a time such as 90s, "
                          f"2m or 1h, or auto; got {text[:40]!r}")
    return "time", seconds


def choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        words = [str(c) for c in choices]
        raise ConfigError(f"{key} must be one of {', '.join(words)}, got {value!r}"
                          f"{did_you_mean(str(value), words)}")


def table_text(table: dict[int, int]) -> str:
    return ",".join(f"{r}:{b}" for r, b in sorted(table.items()))


def _get(cfg: RunConfig, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)
