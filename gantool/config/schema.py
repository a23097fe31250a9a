"""The run configuration's schema: every option declared once, with its default, its help and
its allowed values.

A run's configuration has three sections, ``model``, ``data`` and ``train``; the training
section is grouped (schedule, loss, hardware, output, evaluation, guard) as dataclasses that
``TrainConfig`` joins, so its keys stay flat (``train.lr_g``) in files, checkpoints and
overrides. What is declared here drives the checks (``checks.py``), the parsing of strings
(``parse.py``) and the CLI's train options and their help (``gantool.cli.train``, which spells
them as flags). Of gantool it imports only the latent contract (``gantool.latent``: numpy and
the standard library), whose priors the model section names.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from gantool.latent import PRIORS

LABEL_SMOOTHING = ("hard", "one-sided", "two-sided")
FITS = ("crop", "pad")
AMP_MODES = ("auto", "off", "bf16", "fp16")
# torch.compile modes for training. The CUDA-graph modes (reduce-overhead, max-autotune) are left
# out: D runs several times a step and their graph trees overwrite its earlier outputs (seen on
# an H100, torch 2.11); train.cuda_graphs graphs the whole step instead.
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
DEVICES = ("auto", "cpu", "cuda")
# generator: Radford's DCGAN, Xin's residual generator, a FastGAN-style few-shot generator
ARCHS = ("dcgan", "residual", "fastgan", "stylegan2", "stylegan3", "lightweight-gan",
         "fastgan-pytorch")
# generators gantool draws from but does not train: brought in by gantool import
IMPORTED_ARCHS = ("stylegan2", "stylegan3", "lightweight-gan", "fastgan-pytorch")
PSI_ARCHS = ("stylegan2", "stylegan3")  # networks that apply the truncation themselves (psi)
# discriminator: DCGAN, Xin's (last layer twice, average pool), FastGAN's self-supervised one
D_ARCHS = ("dcgan", "pooled", "fastgan")
LOSSES = ("bce", "lsgan", "hinge", "wgan-gp", "rpgan")  # gantool.train.losses implements each
EXTRA_UPDATES = ("both", "d", "g")
AUGMENTS = ("color", "translation", "cutout")  # DiffAugment transforms (gantool.train.augment)
EVAL_METRICS = ("fid", "kid")  # gantool.metrics


def option(default: Any, help: str, *, choices: tuple = (), at_least: int | None = None,
           fraction: bool = False) -> Any:
    """A field of the schema. ``choices``: the allowed values; ``at_least``: the smallest
    allowed number; ``fraction``: a value in [0, 1)."""
    meta = {"help": help, "choices": choices, "at_least": at_least, "fraction": fraction}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    """Model: the generator/discriminator pair and the latent prior it was trained with."""

    arch: str = option("dcgan", "Generator: Radford's DCGAN, Xin's residual one, or the "
                       "FastGAN-style few-shot one; stylegan2, stylegan3, lightweight-gan and "
                       "fastgan-pytorch for an imported generator (gantool import), which "
                       "gantool draws from but does not train.",
                       choices=ARCHS)
    d_arch: str = option("dcgan", "Discriminator: DCGAN, Xin's pooled one (last layer twice, "
                         "average pool), or FastGAN's self-supervised one.", choices=D_ARCHS)
    res_blocks: int = option(9, "Residual blocks of the residual generator.", at_least=1)
    resolution: int = option(64, "Square image size, e.g. 28, 64, 1024.")
    channels: int = option(3, "1 (grayscale) or 3 (colour).", choices=(1, 3))
    nz: int = option(100, "Latent size.", at_least=1)
    ngf: int = option(64, "Generator width.", at_least=1)
    ndf: int = option(64, "Discriminator width.", at_least=1)
    max_channels: int = option(512, "Widest layer of either network.", at_least=1)
    d_dropout: float = option(0.0, "Dropout after every LeakyReLU of D.", fraction=True)
    d_dropout_head: float = option(0.0, "One more dropout right before D's logit layer.",
                                   fraction=True)
    d_mbstd: bool = option(False, "Minibatch standard deviation channel before D's last layer.")
    d_spectral_norm: bool = option(False, "Spectral normalisation of every D convolution.")
    noise: bool = option(False, "FastGAN's per-pixel noise while training (fastgan G only); "
                         "drawing uses one fixed noise map per layer, stored in the checkpoint, "
                         "so an image stays a function of its z.")
    prior: str = option("normal", "Latent prior.", choices=PRIORS)
    truncation: float | None = option(None, "Default sampling truncation (largest |z|); none: "
                                      "the plain prior.")
    arch_params: dict = option({}, "An imported generator's own hyper-parameters (set by "
                               "gantool import; empty for the architectures gantool trains).")
    classes: tuple[str, ...] = option((), "Class names of a conditional pair (conditional "
                                      "BatchNorm in G, projection D); empty: unconditional. "
                                      "Filled from the data's labels by data.class_labels.")
    class_counts: tuple[int, ...] = option((), "Training images per class of a conditional pair "
                                           "(set from the data when training starts): eval "
                                           "draws classes in these proportions.")


@dataclass(frozen=True)
class DataConfig:
    """Data: where the images come from and how they are fitted to the training resolution."""

    path: str = option("", "Image folder, .zip/.tar, IDX file/folder, or builtin:fashion-mnist.")
    fit: str = option("crop", "Resize fit.", choices=FITS)
    flip: bool = option(False, "Random horizontal flips.")
    background: tuple[int, int, int] = option((255, 255, 255), "Colour behind transparent "
                                              "pixels and {fit} pad borders, three values "
                                              "0..255.")
    class_labels: bool = option(
        False, "Read class labels (a sub-folder per class, a dataset.json of [file, class] "
        "pairs, or IDX labels files) and train a class-conditional pair: draw with {class}.")


@dataclass(frozen=True)
class Schedule:
    """Optimisation: steps, batch, learning rates and their schedules, EMA, the run seed."""

    steps: int = option(10_000, "Total training steps (also on {resume}).", at_least=1)
    batch_size: int = option(64, "Images per step.", at_least=1)
    batch_sizes: dict[int, int] = option(
        {}, "Resolution -> batch size (e.g. 192:128,1024:6): picks batch_size for the model's "
        "resolution unless batch_size itself is given (the nearest listed resolution at or "
        "above; past the end, the largest listed).")
    lr_g: float = option(2e-4, "Generator learning rate.")
    lr_d: float = option(2e-4, "Discriminator learning rate.")
    betas_g: tuple[float, float] = option((0.5, 0.999), "Adam betas of G, two values in [0, 1).")
    betas_d: tuple[float, float] = option((0.5, 0.999), "Adam betas of D, two values in [0, 1).")
    lr_gamma: float = option(1.0, "Exponential decay: lr = lr0 * lr_gamma ** (step / "
                             "lr_gamma_every).")
    lr_gamma_every: int = option(1000, "Steps of one lr_gamma factor.", at_least=1)
    lr_decay_at: int = option(0, "Step decay: from this step on, lr *= lr_decay_factor; 0 = off.",
                              at_least=0)
    lr_decay_factor: float = option(0.1, "The step decay's factor.")
    extra_update_every: int = option(0, "Marchesi: every N steps one more alternating update; "
                                     "0 = off.", at_least=0)
    extra_update: str = option("both", "Which nets that extra update trains.",
                               choices=EXTRA_UPDATES)
    ema_decay: float = option(0.999, "Decay of the EMA generator; 0 = none.", fraction=True)
    seed: int = option(0, "Run seed (data order, init, noise).", at_least=0)


@dataclass(frozen=True)
class Losses:
    """Loss: the adversarial loss, its targets and penalties, and D's augmentation."""

    loss: str = option("bce", "Adversarial loss: bce (non-saturating), lsgan, hinge (for a "
                       "fastgan D), wgan-gp or rpgan (relativistic pairing, R3GAN's; with "
                       "train.r1_gamma and train.r2_gamma).", choices=LOSSES)
    gp_weight: float = option(10.0, "Gradient-penalty weight (lambda) of wgan-gp.", at_least=0)
    r1_gamma: float = option(0.0, "R1 penalty on real images, gamma/2 E||grad D(x)||^2 (any "
                             "loss; 0 = none).", at_least=0)
    r2_gamma: float = option(0.0, "R2 penalty on generated images, the same on G(z) (any loss; "
                             "0 = none).", at_least=0)
    penalty_every: int = option(1, "Steps between the R1/R2 penalties, each then applied that "
                                "many times as strong (lazy regularization).", at_least=1)
    class_loss: float = option(1.0, "A conditional pair: weight of the class loss (P2GAN's dual "
                               "projection); 0 = the plain projection discriminator.",
                               at_least=0)
    augment: str = option("", "DiffAugment policy for D's inputs: a comma list of "
                          "color,translation,cutout.")
    labels: str = option("hard", "Label smoothing: one-sided (real 0.9), two-sided (real 0.9, "
                         "fake 0.1).", choices=LABEL_SMOOTHING)


@dataclass(frozen=True)
class Hardware:
    """Hardware: device, precision, memory layout, compilation."""

    device: str = option("auto", "Where to train.", choices=DEVICES)
    amp: str = option("auto", "Mixed precision (auto: bf16 on GPUs that have it, else fp16 with "
                      "scaling; off on CPU).", choices=AMP_MODES)
    channels_last: bool | None = option(None, "Channels-last memory layout (none: on for CUDA "
                                        "without compile).")
    sync_bn: bool = option(False, "Under torchrun on GPUs: BatchNorm statistics over the global "
                           "batch.")
    compile: bool = option(False, "torch.compile G and D (compiles for a while).")
    compile_mode: str = option("default", "torch.compile mode.", choices=COMPILE_MODES)
    cuda_graphs: bool = option(False, "Replay each step as one captured CUDA graph (GPU; "
                               "fastest for small images).")


@dataclass(frozen=True)
class Output:
    """Output: logs, sample grids and checkpoints in the run directory."""

    log_every: int = option(10, "Steps between metrics rows (also on {resume}).", at_least=1)
    sample_every: str = option(
        "auto", "Sample grids besides the first step's and the last: every N steps (0: each "
        "epoch), every TIME of training (90s, 2m, 1h), or auto: 2, 4, 8, 16 and 32 minutes into "
        "the session, then every 30 (also on {resume}).")
    sample_grid: int = option(64, "Seeds 0..N-1 in each sample grid; 0: none (also on {resume}).",
                              at_least=0)
    checkpoint_every: int = option(0, "Steps between checkpoints (0: each epoch).", at_least=0)
    keep: int = option(5, "Step checkpoints kept besides last.pt.", at_least=1)
    tensorboard: bool = option(
        False, "Also log scalars, sample grids and the configuration for TensorBoard in "
        "RUN/tensorboard (the tensorboard extra); view with: tensorboard --logdir runs.")


@dataclass(frozen=True)
class Evaluation:
    """Evaluation: FID/KID while training, and sample diversity."""

    eval_every: int = option(0, "Steps between FID/KID evaluations (metrics extra); 0 = off.",
                             at_least=0)
    eval_metric: str = option("fid", "What picks checkpoints/best.pt.", choices=EVAL_METRICS)
    eval_num: int = option(1000, "Generated (and real) images per evaluation.", at_least=2)
    diversity_every: int = option(100, "Steps between sample-diversity measures of seeds 0..63 "
                                  "(logged; the guard's collapse signal); 0 = off.", at_least=0)


@dataclass(frozen=True)
class Guard:
    """Guard: the divergence guard (gantool.train.guard). On a non-finite loss, or a collapse
    signal held for guard_patience steps, roll back to the last good checkpoint, multiply both
    learning rates by guard_lr_factor, and stop with an error after guard_max_rollbacks
    rollbacks."""

    guard: bool = option(True, "The divergence guard on or off.")
    guard_patience: int = option(200, "Steps a collapse signal must hold.", at_least=1)
    guard_min_spread: float = option(0.05, "Collapse: the fake batch's spread below this fraction "
                                     "of the real one.", at_least=0)
    guard_min_diversity: float = option(0.2, "Collapse: sample diversity below this.",
                                        at_least=0)
    guard_lr_factor: float = option(0.5, "Learning-rate factor of a rollback, in (0, 1].")
    guard_max_rollbacks: int = option(3, "Rollbacks before the run stops with an error.",
                                      at_least=0)


@dataclass(frozen=True)
class TrainConfig(Guard, Evaluation, Output, Hardware, Losses, Schedule):
    """Optimisation, loss, hardware, output, evaluation and the guard, as one flat section."""


# the groups of the train section, in the order of the help (and of its fields)
TRAIN_GROUPS = (Schedule, Losses, Hardware, Output, Evaluation, Guard)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; stored in config.json and inside every checkpoint."""

    name: str = "custom"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@dataclass(frozen=True)
class Option:
    """One declared option: its key (``section.field``), the group it is declared in (the name
    of its dataclass: ``ModelConfig``, ``DataConfig`` or one of ``TRAIN_GROUPS``), and the
    declaration's parts."""

    key: str
    name: str
    type: Any
    group: str
    default: Any
    help: str
    choices: tuple
    at_least: int | None
    fraction: bool


def options() -> list[Option]:
    """Every option of the schema, group by group (data, model, then the train groups)."""
    groups = [("data", DataConfig), ("model", ModelConfig),
              *[("train", g) for g in TRAIN_GROUPS]]
    out = []
    for section, cls in groups:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append(Option(f"{section}.{f.name}", f.name, hints[f.name], cls.__name__,
                              default, **f.metadata))
    return out


def all_keys() -> list[str]:
    return [o.key for o in options()]
