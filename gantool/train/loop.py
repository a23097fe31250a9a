"""The training loop: the only place with optimizers, AMP and EMA.

Everything random in a step is reproducible from the run's seed and the step number (the data
order is a per-epoch permutation; z and dropout come from the global torch RNG, saved in every
checkpoint), so ``--resume`` continues exactly where the checkpoint left off.

Under ``torchrun`` every process runs this loop on its slice of each global batch (see
``gantool.train.distributed``); only rank 0 writes files (run folder, metrics, samples,
checkpoints, evaluations).
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

import gantool
from gantool.config import RunConfig, augment_policy
from gantool.data import ImageSet, load_dataset
from gantool.device import pick_device
from gantool.errors import GantoolError
from gantool.fileio import atomic_write
from gantool.metrics.diversity import diversity, nearest_distance
from gantool.models import build_discriminator, build_generator
from gantool.progress import PLAIN_EVERY_S, StepProgress
from gantool.sampling.images import make_grid, save_image, to_uint8_tensor
from gantool.sampling.latent import batched, latents
from gantool.train import distributed
from gantool.train.augment import diff_augment
from gantool.train.checkpoint import (
    FORMAT,
    atomic_torch_save,
    load_error,
    resolve_resume,
    run_dir_of,
    run_lock,
    save_checkpoint,
    step_checkpoints,
    step_of,
)
from gantool.train.guard import DivergenceGuard
from gantool.train.losses import LOSSES, gradient_penalty
from gantool.train.runlog import RunLog, tensorboard_writer_class

RUN_RE = re.compile(r"^(\d{5})-")
SESSION = "session.json"  # the latest training session's device, precision, versions


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool
    checkpoint: Path | None
    images_per_s: float


def run(cfg: RunConfig | None = None, out: str | os.PathLike = "runs",
        resume: str | os.PathLike | None = None, steps: int | None = None,
        console: Console | None = None, progress: bool = True,
        progress_every: float = PLAIN_EVERY_S) -> TrainResult:
    """Start a new run from ``cfg`` under ``out``, or continue the run named by ``resume``.

    On resume the configuration comes from the checkpoint; only the total ``steps`` may change.
    ``progress_every``: seconds between status lines where stderr is not a terminal.
    """
    with ExitStack() as held:
        return _run(cfg, out, resume, steps, console or Console(stderr=True), progress,
                    progress_every, held)


def _run(cfg, out, resume, steps, console, progress, progress_every,
         held: ExitStack) -> TrainResult:
    state = None
    world = distributed.from_env()
    if resume is not None:
        if world.main and run_dir_of(resume).is_dir():  # else resolve_resume says what is wrong
            held.enter_context(run_lock(run_dir_of(resume)))
        run_dir, state = resolve_resume(resume)
        cfg = RunConfig.from_dict(state["config"])
        if steps is not None:
            cfg = replace(cfg, train=replace(cfg.train, steps=steps))
        newer = [p.name for p in step_checkpoints(run_dir / "checkpoints")
                 if step_of(p) > state["step"]]
        if newer:
            raise GantoolError(f"{run_dir} has checkpoints past step {state['step']} "
                               f"({', '.join(newer)}); resuming from an older one would "
                               "overwrite them: resume the run directory, or move them away")
        if state["step"] >= cfg.train.steps:
            raise GantoolError(f"{run_dir} already reached step {state['step']} of "
                               f"{cfg.train.steps}; pass a larger --steps to train further")
    if cfg is None:
        raise ValueError("run() needs a RunConfig or a run to resume")
    if cfg.train.tensorboard and world.main:
        tensorboard_writer_class()  # a missing extra is one line before any file is made
    if not world.main:  # one voice: rank 0 reports, the others only train
        console, progress = Console(stderr=True, quiet=True), False
    trainer = Trainer(cfg, console, progress, world, progress_every)  # before any file
    try:
        if state is None:
            run_dir = None
            if world.main:
                run_dir = new_run_dir(Path(out), cfg.name)
                held.enter_context(run_lock(run_dir))
                (run_dir / "config.json").write_text(cfg.to_json() + "\n")
                console.print(f"run: {run_dir} (if stopped: gantool train --resume {run_dir})",
                              highlight=False, soft_wrap=True)
            run_dir = distributed.broadcast_object(run_dir, world)
            log = held.enter_context(closing(RunLog(run_dir, world.main,
                                                    cfg.train.tensorboard)))
            log.text("config", f"```\n{cfg.to_json()}\n```")
        else:
            trainer.load_state(state)
            log = held.enter_context(closing(RunLog(run_dir, world.main,
                                                    cfg.train.tensorboard)))
            log.truncate(trainer.step)
            console.print(f"resuming {run_dir} at step {trainer.step}")
        return trainer.fit(run_dir, log)
    finally:
        distributed.shutdown(world)


def new_run_dir(out: Path, name: str) -> Path:
    """Create ``out/NNNNN-name`` with the next free number."""
    out.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in out.iterdir() if (m := RUN_RE.match(p.name))]
    number = max(taken, default=0) + 1
    while True:
        path = out / f"{number:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


class EpochSampler:
    """Batch indices and flip masks as a pure function of (seed, step): drop-last epochs."""

    def __init__(self, n: int, batch_size: int, seed: int, flip: bool):
        if n < batch_size:
            raise GantoolError(f"the dataset has {n} images, fewer than the batch size "
                               f"{batch_size}; lower --batch-size or add images")
        self.n, self.batch_size, self.seed, self.flip = n, batch_size, seed, flip
        self.steps_per_epoch = n // batch_size
        self._epoch, self._perm, self._flips = -1, None, None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._flips = torch.rand(self.n, generator=g) < 0.5 if self.flip else None
            self._epoch = epoch
        idx = self._perm[i * self.batch_size : (i + 1) * self.batch_size]
        return idx, (self._flips[idx] if self._flips is not None else None)


DIVERSITY_SEEDS = 64  # seeds 0..63: the sample diversity the log and the guard watch


class Trainer:
    """Owns G, D, G_ema, both optimizers, the AMP scaler and the data for one run."""

    def __init__(self, cfg: RunConfig, console: Console, progress: bool = True,
                 world: distributed.World | None = None, progress_every: float = PLAIN_EVERY_S):
        self.cfg, self.console, self.show_progress = cfg, console, progress
        self.progress_every = progress_every
        m, t = cfg.model, cfg.train
        self.world = world = world or distributed.World()
        self.local_batch = distributed.check_batch(t.batch_size, world)
        self.device = pick_device(t.device)
        if self.device.type == "cuda" and world.enabled:
            if world.local_rank >= torch.cuda.device_count():
                raise GantoolError(
                    f"torchrun started process {world.local_rank + 1} on this node but only "
                    f"{torch.cuda.device_count()} GPU(s) are visible: one process per GPU, so "
                    "pass --nproc_per_node at most that (or train with --device cpu)")
            self.device = torch.device("cuda", world.local_rank)
            torch.cuda.set_device(self.device)
        if t.sync_bn and (not world.enabled or self.device.type != "cuda"):
            raise GantoolError("train.sync_bn needs several GPU processes (torchrun "
                               "--nproc_per_node N on CUDA); plain BatchNorm is used otherwise")
        distributed.init(world, self.device)
        self.amp_dtype = pick_amp(t.amp, self.device)
        if t.cuda_graphs and (self.device.type != "cuda" or world.enabled
                              or self.amp_dtype == torch.float16):
            raise GantoolError("train.cuda_graphs needs one process on a CUDA GPU and no fp16 "
                               "autocast (bf16 or off); found "
                               f"{self.device.type}, {world.size} process(es), amp {t.amp}")
        # channels_last by default on CUDA, but not under torch.compile, which picks its own
        # layouts (and whose convolution backward can refuse channels_last weights)
        self.channels_last = (self.device.type == "cuda" and not t.compile
                              if t.channels_last is None else t.channels_last)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        torch.manual_seed(t.seed)  # weights, then z and dropout, all follow the run's seed
        self.G = build_generator(m).to(self.device, memory_format=fmt)
        self.D = build_discriminator(m).to(self.device, memory_format=fmt)
        if t.sync_bn:  # same parameters and state_dict keys: checkpoints stay interchangeable
            self.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        distributed.broadcast_module(self.G, world)  # identical replicas from the start
        distributed.broadcast_module(self.D, world)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if t.ema_decay else None
        if t.compile:  # after the EMA copy, which must not share G's compiled forward
            self.G.compile(mode=t.compile_mode)
            self.D.compile(mode=t.compile_mode)
        fused = self.device.type == "cuda"  # one kernel per step for all of a net's tensors
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=t.betas_g,
                                      fused=fused, capturable=t.cuda_graphs)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=t.betas_d,
                                      fused=fused, capturable=t.cuda_graphs)
        self._graph: torch.cuda.CUDAGraph | None = None  # train.cuda_graphs: the captured step
        self._static_real: torch.Tensor | None = None
        self._static_logs: dict[str, torch.Tensor] = {}
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.augment = augment_policy(t.augment)
        self.guard = (DivergenceGuard(t.guard_patience, t.guard_min_spread, t.loss == "bce",
                                      t.guard_min_diversity) if t.guard else None)
        self.rollbacks, self.lr_scale = 0, 1.0  # the guard's doing; saved in checkpoints
        self.best: dict | None = None  # {"metric", "value", "step"} of checkpoints/best.pt
        self.step = 0
        self.data = self._load_data()
        self.images = self._place(torch.from_numpy(self.data.images))  # (N, C, R, R) uint8
        self.sampler = EpochSampler(len(self.data), t.batch_size, t.seed, cfg.data.flip)
        self.real_distance = _real_distance(self.data.images) if t.diversity_every else None
        if world.rank:  # each rank its own z and dropout; rank 0 keeps the single-process stream
            torch.manual_seed(rank_seed(t.seed, 0, world.rank))

    # ---- setup -------------------------------------------------------------------------------
    def _load_data(self) -> ImageSet:
        m, d = self.cfg.model, self.cfg.data
        if not d.path:
            raise GantoolError("no training data: pass --data PATH (a folder, a .zip, IDX files, "
                               "or builtin:fashion-mnist)")
        data = load_dataset(d.path, m.resolution, m.channels, d.fit, tuple(d.background),
                            progress=self.show_progress)
        if data.skipped:
            first, why = data.skipped[0]
            self.console.print(f"[yellow]skipped {len(data.skipped)} unreadable file(s)[/] "
                               f"(first: {first}: {why})")
        self.console.print(f"data: {data.source}")
        return data

    def _place(self, images: torch.Tensor) -> torch.Tensor:
        """Where the decoded dataset lives: on the GPU when it takes at most a quarter of the
        GPU's memory (2,000 images at 1024 px take 6.3 GB), so batches are gathered there with
        no host-to-device copy per step; else in host memory (the numpy array's own)."""
        if self.device.type == "cuda" and (
                images.nbytes <= torch.cuda.get_device_properties(self.device).total_memory / 4):
            return images.to(self.device)
        return images

    def load_state(self, state: dict) -> None:
        """Restore everything a checkpoint holds, so training continues exactly; a one-line
        error for a damaged or forged one."""
        try:
            self._load_state(state)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise GantoolError(f"the checkpoint does not fit the run it names "
                               f"({type(e).__name__}: {load_error(e)}); resume from another "
                               "checkpoint of the run") from None

    def _load_state(self, state: dict) -> None:
        self._graph = None  # the optimizers get new state tensors: capture again
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        guard = state.get("guard") or {}
        self.rollbacks, self.lr_scale = int(guard.get("rollbacks", 0)), guard.get("lr_scale", 1.0)
        self.best = state.get("best")
        ranks = state["rng"].get("ranks") or [state["rng"]["torch"]]
        if len(ranks) == self.world.size:  # the same number of processes: exactly as it was
            torch.set_rng_state(ranks[self.world.rank])
        else:  # another number of processes: rank 0 continues, the others start fresh streams
            torch.set_rng_state(ranks[0])
            if self.world.rank:
                torch.manual_seed(rank_seed(self.cfg.train.seed, self.step, self.world.rank))
        if self.device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "gantool_version": gantool.__version__,
            "config": self.cfg.to_dict(),
            "step": self.step,
            "epoch": self.step / self.sampler.steps_per_epoch,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": _plain_lr(self.opt_G.state_dict()),
            "opt_D": _plain_lr(self.opt_D.state_dict()),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "guard": {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale},
            "best": self.best,
        }

    # ---- one step ----------------------------------------------------------------------------
    def real_batch(self, step: int) -> torch.Tensor:
        """This rank's slice of the global batch of ``step`` (all of it in one process)."""
        idx, flips = self.sampler.batch(step)
        if self.world.enabled:
            lo = self.world.rank * self.local_batch
            part = slice(lo, lo + self.local_batch)
            idx, flips = idx[part], (flips[part] if flips is not None else None)
        x = self.images[idx.to(self.images.device)]  # (B, C, R, R) uint8
        if flips is not None:
            x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(-1), x)
        x = x.to(self.device, non_blocking=True).float().mul_(1 / 127.5).sub_(1.0)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def sample_z(self, n: int) -> torch.Tensor:
        nz = self.cfg.model.nz
        if self.cfg.model.prior == "uniform":
            return torch.rand(n, nz, device=self.device).mul_(2).sub_(1)
        return torch.randn(n, nz, device=self.device)

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D update on real and fake, then one G update; plus, every
        ``extra_update_every`` steps, one more alternating update (the megapixel paper's
        stabiliser) on the same real batch with fresh z."""
        t = self.cfg.train
        self._set_lr()
        logs = (self._graphed_update(real) if t.cuda_graphs
                else self._update(real, update_d=True, update_g=True))
        if t.extra_update_every and (self.step + 1) % t.extra_update_every == 0:
            self._update(real, update_d=t.extra_update in ("both", "d"),
                         update_g=t.extra_update in ("both", "g"))
        distributed.broadcast_module(self.G, self.world, buffers_only=True)
        distributed.broadcast_module(self.D, self.world, buffers_only=True)
        self._update_ema()
        self.step += 1
        return logs

    def _update(self, real: torch.Tensor, update_d: bool, update_g: bool) -> dict:
        t = self.cfg.train
        d_loss, g_loss = LOSSES[t.loss]
        autocast = torch.autocast(self.device.type, self.amp_dtype,
                                  enabled=self.amp_dtype is not None,
                                  cache_enabled=not t.cuda_graphs)  # graphs need it off
        logs: dict[str, torch.Tensor] = {}
        z = self.sample_z(real.shape[0])
        with autocast, torch.set_grad_enabled(update_g):
            fake = self.G(z)  # (B, C, R, R)
        if update_d:
            self.D.requires_grad_(True)
            with autocast:
                real_in, fake_in = self.d_input(real), self.d_input(fake.detach())
                real_logits = self.D(real_in)
                fake_logits = self.D(fake_in)
                loss_d = d_loss(real_logits.float(), fake_logits.float(), t.labels)
            if t.loss == "wgan-gp":
                loss_d = loss_d + t.gp_weight * gradient_penalty(self.D, real_in, fake_in)
            self.opt_D.zero_grad(set_to_none=True)
            self.scaler.scale(loss_d).backward()
            distributed.average_gradients(self.D, self.world)
            self.scaler.step(self.opt_D)
            logs.update(loss_d=loss_d.detach(),
                        d_real=torch.sigmoid(real_logits.detach().float()).mean(),
                        d_fake=torch.sigmoid(fake_logits.detach().float()).mean(),
                        spread=batch_spread(fake.detach()) / batch_spread(real).clamp_min(1e-8))
        if update_g:
            # D's weights need no gradients here, only the path through D to G does.
            self.D.requires_grad_(False)
            with autocast:
                loss_g = g_loss(self.D(self.d_input(fake)).float())
            self.opt_G.zero_grad(set_to_none=True)
            self.scaler.scale(loss_g).backward()
            distributed.average_gradients(self.G, self.world)
            self.scaler.step(self.opt_G)
            logs["loss_g"] = loss_g.detach()
        self.scaler.update()
        return logs

    def _graphed_update(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """``_update(real, True, True)`` replayed from a CUDA graph captured on first use: one
        launch instead of hundreds of kernels, whose launch cost is what bounds small images on
        a fast GPU. The logs are the graph's own output tensors (valid until the next replay)."""
        if self._graph is None:
            self._capture(real)
        self._static_real.copy_(real)
        self._graph.replay()
        return dict(self._static_logs)

    def _capture(self, real: torch.Tensor) -> None:
        """Capture one D-and-G update. Capture needs warm-up steps first (the optimizers' state,
        cuDNN's workspaces); they are undone afterwards, so the run goes on as if eager."""
        opts = (self.opt_G, self.opt_D)
        for opt in opts:  # a checkpoint's param groups may come from an uncaptured run
            for group in opt.param_groups:
                group["capturable"] = True
                if not isinstance(group["lr"], torch.Tensor):
                    group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
        had_state = [bool(opt.state) for opt in opts]
        tensors = [*self.G.parameters(), *self.G.buffers(), *self.D.parameters(),
                   *self.D.buffers(), *(v for opt in opts for st in opt.state.values()
                                        for v in st.values() if isinstance(v, torch.Tensor))]
        saved = [x.detach().clone() for x in tensors]
        rng = torch.cuda.get_rng_state(self.device)
        self._static_real = real.clone()
        stream = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(stream)
        with torch.cuda.stream(side):
            for _ in range(2):
                self._update(self._static_real, update_d=True, update_g=True)
        stream.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_logs = self._update(self._static_real, update_d=True, update_g=True)
        with torch.no_grad():  # undo the warm-up
            torch._foreach_copy_(tensors, saved)
            for opt, had in zip(opts, had_state):
                if not had:  # Adam's state starts at zero
                    for st in opt.state.values():
                        for v in st.values():
                            if isinstance(v, torch.Tensor):
                                v.zero_()
        torch.cuda.set_rng_state(rng, self.device)
        self._graph = graph

    def d_input(self, x: torch.Tensor) -> torch.Tensor:
        """What D sees of a real or fake batch: DiffAugment'ed when the run asks for it."""
        return diff_augment(x, self.augment) if self.augment else x

    def _set_lr(self) -> None:
        t = self.cfg.train
        step_decay = t.lr_decay_at and self.step >= t.lr_decay_at
        factor = self.lr_scale * t.lr_gamma ** (self.step / t.lr_gamma_every)
        factor *= t.lr_decay_factor if step_decay else 1.0
        for opt, lr in ((self.opt_G, t.lr_g), (self.opt_D, t.lr_d)):
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):  # read by a captured step
                    group["lr"].fill_(lr * factor)
                else:
                    group["lr"] = lr * factor

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        decay = min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))  # warm-up
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1 - decay)
        torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self, run_dir: Path, log: RunLog | None = None) -> TrainResult:
        """Train to ``train.steps``, recording into ``log`` (default: metrics.jsonl only)."""
        t = self.cfg.train
        spe = self.sampler.steps_per_epoch
        sample_every = t.sample_every or spe
        ckpt_every = t.checkpoint_every or spe
        self.log = log = log or RunLog(run_dir, self.world.main)
        if self.world.main:
            self._write_session(run_dir)
        sums: dict[str, torch.Tensor] = {}
        window_start, window_steps, images_per_s = time.perf_counter(), 0, 0.0
        start_step, t0, ckpt = self.step, time.perf_counter(), None
        good = _cpu_copy(self.state_dict())  # where the divergence guard rolls back to
        next_diversity = (self.step // t.diversity_every + 1) * t.diversity_every \
            if t.diversity_every else 0
        main, world = self.world.main, self.world
        bar = StepProgress(self.console, "train", t.steps, self.step, self.show_progress,
                           self.progress_every, short=("D", "G", "img/s"))
        with _graceful_stop() as stop, bar:
            while self.step < t.steps and not distributed.any_rank(stop(), world, self.device):
                logs = self.train_step(self.real_batch(self.step))
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0) + v
                window_steps += 1
                bar.advance(self.step)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    now = time.perf_counter()
                    images_per_s = window_steps * t.batch_size / (now - window_start)
                    sums = distributed.mean_over_ranks(sums, world)  # one row, the same on all
                    row = self._log_row(sums, window_steps, images_per_s)
                    if self.real_distance and self.step >= next_diversity:
                        row["diversity"] = round(self.sample_diversity(), 4)
                        next_diversity = (self.step // t.diversity_every + 1) * t.diversity_every
                    log.write(row)
                    bar.advance(self.step, {
                        "epoch": f"{self.step / spe:.2f}", "D": f"{row['loss_d']:.3f}",
                        "G": f"{row['loss_g']:.3f}", "D(x)": f"{row['d_real']:.2f}",
                        "D(G(z))": f"{row['d_fake']:.2f}", "img/s": f"{images_per_s:,.0f}"})
                    reason = self.guard.observe(row, window_steps) if self.guard else None
                    sums, window_steps, window_start = {}, 0, now
                    if reason:
                        good = self._roll_back(good, reason, run_dir, bar)
                        next_diversity = self.step + t.diversity_every
                        bar.advance(self.step)
                        continue
                if main and (self.step % sample_every == 0 or self.step == t.steps):
                    grid = self.write_samples(run_dir)
                    bar.print(f"step {self.step} (epoch {self.step / spe:.2f}): {grid}")
                if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.steps):
                    if main:
                        self._evaluate(run_dir, bar)
                    self.best = distributed.broadcast_object(self.best, world)
                if self.step % ckpt_every == 0 or self.step == t.steps:
                    state = self._checkpoint_state(run_dir)
                    if main:
                        ckpt = save_checkpoint(state, run_dir / "checkpoints", t.keep)
                        bar.mark()
                    if self._healthy(sums):
                        good = _cpu_copy(state)
        interrupted = self.step < t.steps
        if interrupted and self.step > start_step:
            state = self._checkpoint_state(run_dir)
            if main:
                ckpt = save_checkpoint(state, run_dir / "checkpoints", t.keep)
        elapsed = time.perf_counter() - t0
        rate = (self.step - start_step) * t.batch_size / elapsed if elapsed > 0 else 0.0
        return TrainResult(run_dir, self.step, interrupted, ckpt, rate)

    def _write_session(self, run_dir: Path) -> None:
        """``RUN/session.json``: what this training session runs on (the report's header)."""
        session = {"device": str(self.device), "processes": self.world.size,
                   "precision": str(self.amp_dtype or torch.float32).removeprefix("torch."),
                   "gantool_version": gantool.__version__, "torch_version": torch.__version__,
                   "from_step": self.step, "started": round(time.time(), 3)}
        with atomic_write(run_dir / SESSION) as f:
            f.write((json.dumps(session, indent=2) + "\n").encode())

    def _checkpoint_state(self, run_dir: Path) -> dict:
        """``state_dict`` plus, with several processes, every rank's RNG state; checks (and
        records in metrics.jsonl) that all ranks hold the same networks and optimizers."""
        state = self.state_dict()
        if not self.world.enabled:
            return state
        state["rng"]["ranks"] = distributed.gather(state["rng"]["torch"], self.world)
        prints = distributed.gather(distributed.fingerprint(
            *(m for m in (self.G, self.D, self.G_ema) if m is not None)), self.world)
        self.log.write({"step": self.step, "event": "replicas", "world": self.world.size,
                        "sha256": prints, "time": round(time.time(), 3)})
        if len(set(prints)) > 1:
            raise GantoolError(f"the {self.world.size} processes hold different networks at "
                               f"step {self.step}: a data-parallel bug; please report it")
        return state

    def _healthy(self, sums: dict[str, torch.Tensor]) -> bool:
        """Whether the state right now is one the guard may roll back to."""
        if self.guard is None:
            return True
        return self.guard.healthy and all(bool(torch.isfinite(v)) for v in sums.values())

    def _roll_back(self, good: dict, reason: str, run_dir: Path, console: StepProgress) -> dict:
        """Return to the last good state, drop what came after it, lower the learning rates;
        raise GantoolError once ``guard_max_rollbacks`` rollbacks did not help."""
        t, ckpt_dir = self.cfg.train, run_dir / "checkpoints"
        at_step, rollbacks, lr_scale = self.step, self.rollbacks + 1, self.lr_scale
        self.load_state(good)
        main = self.world.main
        if main:
            for path in step_checkpoints(ckpt_dir):
                if step_of(path) > self.step:
                    path.unlink(missing_ok=True)  # from the abandoned trajectory
        self.log.truncate(self.step)
        given_up = rollbacks > t.guard_max_rollbacks
        self.rollbacks = rollbacks
        self.lr_scale = lr_scale if given_up else lr_scale * t.guard_lr_factor
        # not the same z/dropout again
        torch.manual_seed(rank_seed(t.seed + 7919 * rollbacks, self.step, self.world.rank))
        event = {"step": self.step, "event": "rollback" if not given_up else "stop",
                 "reason": reason, "at_step": at_step, "rollbacks": rollbacks,
                 "lr_scale": self.lr_scale, "time": round(time.time(), 3)}
        state = self._checkpoint_state(run_dir)
        path = ckpt_dir / "last.pt"
        self.log.write(event)
        if main:
            path = save_checkpoint(state, ckpt_dir, t.keep)
        if given_up:
            raise GantoolError(
                f"training diverged {rollbacks} times (last: {reason} at step {at_step}); "
                f"stopped. The last good checkpoint is {path}: lower --lr-g/--lr-d, try another "
                "--seed, or raise --set train.guard_max_rollbacks")
        console.print(f"[yellow]divergence guard:[/] {reason} at step {at_step}; rolled back to "
                      f"step {self.step}, learning rates x{self.lr_scale:g} "
                      f"(rollback {rollbacks} of at most {t.guard_max_rollbacks})")
        return _cpu_copy(state)

    def _evaluate(self, run_dir: Path, console: StepProgress) -> None:
        """FID/KID of G_ema (or G) on seeds 0..eval_num-1 against the training images; logs
        an ``eval`` row and keeps ``checkpoints/best.pt`` at the best value so far."""
        from gantool.metrics.evaluate import evaluate

        t, m = self.cfg.train, self.cfg.model
        result = evaluate(self.sampler_generator(), self.data.images, [t.eval_metric],
                          t.eval_num, truncation=m.truncation, device=str(self.device))
        value = result[t.eval_metric]
        self.log.write({"step": self.step, "event": "eval", t.eval_metric: value,
                        "num": t.eval_num, "time": round(time.time(), 3)})
        better = self.best is None or value < self.best["value"]
        if better:
            self.best = {"metric": t.eval_metric, "value": value, "step": self.step}
            atomic_torch_save({"format": FORMAT, **self.state_dict()},
                              run_dir / "checkpoints" / "best.pt")
        console.print(f"step {self.step}: {t.eval_metric.upper()} {value:.4g}"
                      + (" (best so far: checkpoints/best.pt)" if better else
                         f" (best {self.best['value']:.4g} at step {self.best['step']})"))

    def _log_row(self, sums: dict, n: int, images_per_s: float) -> dict:
        row = {"step": self.step, "epoch": round(self.step / self.sampler.steps_per_epoch, 4)}
        row.update({k: float(v) / n for k, v in sums.items()})
        row.update(lr_g=float(self.opt_G.param_groups[0]["lr"]),
                   lr_d=float(self.opt_D.param_groups[0]["lr"]),
                   images_per_s=round(images_per_s, 2), time=round(time.time(), 3))
        return row

    def sampler_generator(self) -> _ModuleGenerator:
        """G_ema (or G) as a Generator: what sample grids and evaluations draw from."""
        m = self.cfg.model
        g = self.G_ema if self.G_ema is not None else self.G
        return _ModuleGenerator(g, m.nz, m.prior, self.device)

    def sample_diversity(self) -> float:
        """``gantool.metrics.diversity`` of seeds 0..63, drawn the way sample grids are."""
        gen, m = self.sampler_generator(), self.cfg.model
        images = np.concatenate([gen.generate(chunk, m.truncation) for chunk in
                                 batched(range(DIVERSITY_SEEDS), self.local_batch)])
        return diversity(images, self.real_distance)

    def write_samples(self, run_dir: Path) -> Path:
        """A grid of the fixed seeds 0..sample_grid-1 from G_ema (or G) in eval mode."""
        images = self.sampler_generator().generate(range(self.cfg.train.sample_grid),
                                                   self.cfg.model.truncation)
        grid = make_grid(images)
        self.log.image("samples", grid, self.step)
        return save_image(grid, run_dir / "samples" / f"step-{self.step:07d}.png")


class _ModuleGenerator:
    """The Generator protocol over a network being trained: eval mode while it draws."""

    def __init__(self, net, nz: int, prior: str, device: torch.device):
        self.net, self.nz, self.prior, self.device = net, nz, prior, device

    @torch.no_grad()
    def generate(self, seeds, truncation) -> np.ndarray:
        z = torch.from_numpy(latents(list(seeds), self.nz, self.prior, truncation))
        was_training = self.net.training
        self.net.eval()
        try:
            return to_uint8_tensor(self.net(z.to(self.device))).cpu().numpy()
        finally:
            self.net.train(was_training)


def _real_distance(images: np.ndarray) -> float | None:
    """Nearest-neighbour distance within a fixed subset of the real images (N, C, R, R): what
    sample diversity is measured against; None for a dataset of one image."""
    if len(images) < 2:
        return None
    pick = np.random.default_rng(0).permutation(len(images))[:DIVERSITY_SEEDS]
    return nearest_distance(images[np.sort(pick)], channels_last=False) or None


def _plain_lr(opt_state: dict) -> dict:
    """An optimizer state dict with float learning rates (a captured step keeps them as device
    tensors), so that any run, on any device, can load it."""
    for group in opt_state["param_groups"]:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
    return opt_state


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of process ``rank`` (rank 0 of a single process: ``seed + step``)."""
    return seed + step + 104_729 * rank


def batch_spread(x: torch.Tensor) -> torch.Tensor:
    """How different the images of a batch are: per-pixel std across the batch, averaged."""
    return x.float().std(dim=0).mean()


def _cpu_copy(obj):
    """A detached CPU copy of a (nested) state dict, so later training cannot change it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def pick_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: auto = bf16 on GPUs that have it, fp16 on older GPUs, off on CPU."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


@contextmanager
def _graceful_stop() -> Iterator:
    """First Ctrl-C (or SIGTERM) asks the loop to stop at the next step; a second one aborts."""
    requested = {"flag": False}

    def handler(signum, frame):
        if requested["flag"]:
            raise KeyboardInterrupt
        requested["flag"] = True

    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    else:
        old = {}
    try:
        yield lambda: requested["flag"]
    finally:
        for s, h in old.items():
            signal.signal(s, h)
