"""The GAN update: G, D, G_ema, both optimizers and the AMP scaler, and one training step as a
list of phases.

A phase is one alternating update (D on real and fake, then G through D) that runs every
``every`` steps. Every run has the ``main`` phase (every step, its losses are the ones logged);
Marchesi et al.'s stabiliser is a second phase, ``extra``, every ``train.extra_update_every``
steps on the same real batch with fresh z, training both nets or only one
(``train.extra_update``). After the phases: replicas share BatchNorm buffers, and G_ema moves.
A fastgan D also learns to redraw the real images it sees: its self-supervised loss is added to
D's and logged as ``loss_recon`` beside the adversarial ``loss_d``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from gantool.config import RunConfig, TrainConfig, augment_policy
from gantool.models import build_discriminator, build_generator
from gantool.models.layers import one_hot
from gantool.train import distributed
from gantool.train.augment import diff_augment
from gantool.train.graphs import CapturedUpdate
from gantool.train.hardware import Hardware
from gantool.train.losses import LOSSES, PAIRED, gradient_penalty, squared_gradient

STANDING_IMAGES = 256  # latents G_ema's BatchNorm statistics are measured on


@dataclass(frozen=True)
class Phase:
    name: str
    every: int  # runs before step s+1 when (s + 1) % every == 0
    update_d: bool
    update_g: bool
    logged: bool = False  # its losses and D outputs are the step's logs
    graphed: bool = False  # replayed from a captured CUDA graph (train.cuda_graphs)


def phases(t: TrainConfig) -> tuple[Phase, ...]:
    main = Phase("main", 1, True, True, logged=True, graphed=t.cuda_graphs)
    if not t.extra_update_every:
        return (main,)
    return (main, Phase("extra", t.extra_update_every, t.extra_update in ("both", "d"),
                        t.extra_update in ("both", "g")))


class GanUpdate:
    """The networks and optimizers of a run, and the step that trains them."""

    def __init__(self, cfg: RunConfig, hw: Hardware, world: distributed.World):
        m, t = cfg.model, cfg.train
        self.cfg, self.hw, self.world = cfg, hw, world
        torch.manual_seed(t.seed)  # weights, then z and dropout, all follow the run's seed
        self.G = build_generator(m).to(hw.device, memory_format=hw.memory_format)
        self.D = build_discriminator(m).to(hw.device, memory_format=hw.memory_format)
        if t.sync_bn:  # same parameters and state_dict keys: checkpoints stay interchangeable
            self.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        distributed.broadcast_module(self.G, world)  # identical replicas from the start
        distributed.broadcast_module(self.D, world)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if t.ema_decay else None
        if t.compile:  # after the EMA copy, which must not share G's compiled forward
            self.G.compile(mode=t.compile_mode)
            self.D.compile(mode=t.compile_mode)
        fused = hw.device.type == "cuda"  # one kernel per step for all of a net's tensors
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=t.betas_g,
                                      fused=fused, capturable=t.cuda_graphs)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=t.betas_d,
                                      fused=fused, capturable=t.cuda_graphs)
        self.scaler = torch.amp.GradScaler(hw.device.type,
                                           enabled=hw.amp_dtype == torch.float16)
        self.augment = augment_policy(t.augment)
        self.reconstructs = m.d_arch == "fastgan"  # D's self-supervised loss on real images
        self.classifies = bool(m.classes) and t.class_loss > 0  # the dual projection's loss
        self.phases = phases(t)
        self.captured = CapturedUpdate(self) if t.cuda_graphs else None
        self.stats_step: int | None = None  # the step G_ema's standing statistics belong to

    def step(self, real: torch.Tensor, step: int, lr_scale: float,
             c_real: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Train on ``real`` (of classes ``c_real``, one-hot, for a conditional pair) as step
        ``step`` (0-based) of the run; the logged phase's values."""
        self.set_lr(step, lr_scale)
        logs: dict[str, torch.Tensor] = {}
        for phase in self.phases:
            if (step + 1) % phase.every:
                continue
            out = (self.captured(real) if phase.graphed
                   else self.update(real, phase.update_d, phase.update_g, c_real,
                                    penalize=step % self.cfg.train.penalty_every == 0))
            logs = out if phase.logged else logs
        distributed.broadcast_module(self.G, self.world, buffers_only=True)
        distributed.broadcast_module(self.D, self.world, buffers_only=True)
        self.update_ema(step)
        return logs

    def update(self, real: torch.Tensor, update_d: bool, update_g: bool,
               c_real: torch.Tensor | None = None, penalize: bool = True) -> dict:
        """One alternating update: D on ``real`` and fresh fakes, then G through D. A
        conditional pair draws its fakes of uniformly random classes. ``penalize``: the step
        of the lazy R1/R2 penalties (``train.penalty_every``)."""
        t = self.cfg.train
        d_loss, g_loss = LOSSES[t.loss]
        autocast = torch.autocast(self.hw.device.type, self.hw.amp_dtype,
                                  enabled=self.hw.amp_dtype is not None,
                                  cache_enabled=not t.cuda_graphs)  # graphs need it off
        logs: dict[str, torch.Tensor] = {}
        z = self.sample_z(real.shape[0])
        c_fake = self.sample_classes(real.shape[0])
        with autocast, torch.set_grad_enabled(update_g):
            fake = self.G(z, c_fake)  # (B, C, R, R)
        if update_d:
            self.D.requires_grad_(True)
            with autocast:
                real_in, fake_in = self.d_input(real), self.d_input(fake.detach())
                real_logits, recon, scores = self.judge(real_in, c_real, self.reconstructs)
                if self.reconstructs:
                    logs["loss_recon"] = recon.detach()
                fake_logits = self.D(fake_in, c_fake)
                loss_d = d_loss(real_logits.float(), fake_logits.float(), t.labels)
                if scores is not None:
                    loss_class = class_loss(scores, c_real)
                    logs["loss_class"] = loss_class.detach()
                    loss_d = loss_d + t.class_loss * loss_class
            if t.loss == "wgan-gp":
                loss_d = loss_d + t.gp_weight * gradient_penalty(
                    lambda x: self.D(x, c_real), real_in, fake_in)
            penalty = self.penalties(real_in, c_real, fake_in, c_fake, logs) if penalize else 0.0
            self._optimize(loss_d + recon + penalty, self.D, self.opt_D)
            logs.update(loss_d=loss_d.detach(),
                        d_real=torch.sigmoid(real_logits.detach().float()).mean(),
                        d_fake=torch.sigmoid(fake_logits.detach().float()).mean(),
                        spread=batch_spread(fake.detach()) / batch_spread(real).clamp_min(1e-8))
        if update_g:
            # D's weights need no gradients here, only the path through D to G does.
            self.D.requires_grad_(False)
            with autocast:
                fake_logits, _, scores = self.judge(self.d_input(fake), c_fake)
                paired = None
                if t.loss in PAIRED:  # D's view of the reals now: a constant for G
                    with torch.no_grad():
                        paired = self.D(self.d_input(real), c_real).float()
                loss_g = g_loss(fake_logits.float(), paired)
                if scores is not None:
                    loss_g = loss_g + t.class_loss * class_loss(scores, c_fake)
            self._optimize(loss_g, self.G, self.opt_G)
            logs["loss_g"] = loss_g.detach()
        self.scaler.update()
        return logs

    def penalties(self, real_in: torch.Tensor, c_real, fake_in: torch.Tensor, c_fake,
                  logs: dict) -> torch.Tensor | float:
        """R1 (real) and R2 (generated) as gamma/2 E||grad D||^2, each where its gamma is set,
        times ``train.penalty_every`` (lazy regularization); logged as ``r1``/``r2``."""
        t = self.cfg.train
        total: torch.Tensor | float = 0.0
        for key, gamma, x, c in (("r1", t.r1_gamma, real_in, c_real),
                                 ("r2", t.r2_gamma, fake_in, c_fake)):
            if gamma > 0:
                value = squared_gradient(lambda v, c=c: self.D(v, c), x) * t.penalty_every
                logs[key] = value.detach()  # a metrics row's mean over its steps: E||grad||^2
                total = total + gamma / 2 * value
        return total

    def judge(self, x: torch.Tensor, c: torch.Tensor | None, reconstruct: bool = False):
        """D on ``x`` of classes ``c`` -> (logits, reconstruction loss or 0, class scores or
        None): the extras each run asks of its D."""
        classify = self.classifies and c is not None
        flags = {"reconstruct": True} if reconstruct else {}
        out = self.D(x, c, **flags, classify=True) if classify else self.D(x, c, **flags)
        if not (reconstruct or classify):
            return out, 0.0, None
        return out[0], out[1] if reconstruct else 0.0, out[-1] if classify else None

    def _optimize(self, loss: torch.Tensor, net: torch.nn.Module, opt) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        distributed.average_gradients(net, self.world)
        self.scaler.step(opt)

    def sample_z(self, n: int) -> torch.Tensor:
        nz = self.cfg.model.nz
        if self.cfg.model.prior == "uniform":
            return torch.rand(n, nz, device=self.hw.device).mul_(2).sub_(1)
        return torch.randn(n, nz, device=self.hw.device)

    def sample_classes(self, n: int) -> torch.Tensor | None:
        """One-hot classes drawn uniformly for ``n`` fakes; None for an unconditional pair (which
        draws no random numbers for them, so its runs stay as they were)."""
        k = len(self.cfg.model.classes)
        return one_hot(torch.randint(k, (n,), device=self.hw.device), k) if k else None

    def d_input(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of a real or fake batch: DiffAugment'ed when the run asks for it."""
        return diff_augment(x, self.augment) if self.augment else x

    def set_lr(self, step: int, lr_scale: float) -> None:
        """The learning rates of ``step``: schedule (gamma, step decay) times the guard's scale."""
        t = self.cfg.train
        step_decay = t.lr_decay_at and step >= t.lr_decay_at
        factor = lr_scale * t.lr_gamma ** (step / t.lr_gamma_every)
        factor *= t.lr_decay_factor if step_decay else 1.0
        for opt, lr in ((self.opt_G, t.lr_g), (self.opt_D, t.lr_d)):
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):  # read by a captured step
                    group["lr"].fill_(lr * factor)
                else:
                    group["lr"] = lr * factor

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        if self.G_ema is None:
            return
        decay = min(self.cfg.train.ema_decay, (1 + step) / (10 + step))  # warm-up
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1 - decay)
        torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))

    @torch.no_grad()
    def standing_stats(self, step: int) -> None:
        """Measure G_ema's BatchNorm statistics on G_ema itself (BigGAN's "standing
        statistics"). Each step copies G's running statistics, which belong to G's weights, not
        the averaged ones: eval-mode images drawn with them are worse than batch-statistics
        images. Averaged over STANDING_IMAGES fixed latents in training-size batches, before
        G_ema is drawn from or saved; the run's RNG is left as it was (resume stays exact), and
        every rank computes the same values."""
        norms = [m for m in (self.G_ema.modules() if self.G_ema is not None else ())
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms or self.stats_step == step:
            return
        momenta = [m.momentum for m in norms]
        cuda = [self.hw.device] if self.hw.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.cfg.train.seed)
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the batches below
            self.G_ema.train()
            for _ in range(-(-STANDING_IMAGES // self.hw.local_batch)):
                n = self.hw.local_batch
                self.G_ema(self.sample_z(n), self.sample_classes(n))
            self.G_ema.eval()
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.stats_step = step

    def networks(self) -> list[torch.nn.Module]:
        return [m for m in (self.G, self.D, self.G_ema) if m is not None]


def class_loss(scores: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of D's class scores (B, K) against the one-hot classes ``c`` (B, K)."""
    return torch.nn.functional.cross_entropy(scores.float(), c.argmax(dim=1))


def batch_spread(x: torch.Tensor) -> torch.Tensor:
    """How different the images of a batch are: per-pixel std across the batch, averaged."""
    return x.float().std(dim=0).mean()
