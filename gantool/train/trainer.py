"""One run's training: the update, its data, and the schedule around the steps (metrics rows,
sample grids, evaluations, checkpoints, the divergence guard's rollbacks).

Everything random in a step is reproducible from the run's seed and the step number (the data
order is a per-epoch permutation; z and dropout come from the global torch RNG, saved in every
checkpoint), so ``--resume`` continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

import gantool
from gantool.config import RunConfig, sample_cadence
from gantool.data import ImageSet, load_dataset
from gantool.errors import GantoolError, OptionError
from gantool.fileio import atomic_write
from gantool.models import check_networks
from gantool.models.checkpoint import load_error, write_checkpoint
from gantool.progress import PLAIN_EVERY_S, StepProgress, clock
from gantool.sampling.images import make_grid, save_image
from gantool.train import distributed
from gantool.train.batches import EpochOrder, RealBatches
from gantool.train.guard import DivergenceGuard
from gantool.train.hardware import setup_hardware
from gantool.train.run_files import save_checkpoint, step_checkpoints, step_of
from gantool.train.runlog import RunLog
from gantool.train.samples import GridClock, NetworkGenerator, real_distance, sample_diversity
from gantool.train.state import (
    capture,
    cpu_copy,
    gather_replicas,
    rank_seed,
    restore,
    restore_rng,
)
from gantool.train.update import GanUpdate

SESSION = "session.json"  # the latest training session's device, precision, versions


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool
    checkpoint: Path | None
    images_per_s: float
    out_of_time: bool = False  # stopped by the session's time budget (``max_time``)
    stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped it, if one did
    classes: int = 0  # the number of classes of a conditional pair


class _Window:
    """The step logs summed since the last metrics row."""

    def __init__(self):
        self.reset(time.perf_counter())

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0) + v
        self.steps += 1

    def reset(self, now: float) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps, self.start = 0, now


class Trainer:
    """One run's training: the update (nets, optimizers), its data, and the schedule around
    the steps (metrics rows, sample grids, evaluations, checkpoints, the divergence guard)."""

    def __init__(self, cfg: RunConfig, console: Console, progress: bool = True,
                 world: distributed.World | None = None, progress_every: float = PLAIN_EVERY_S,
                 fit_batch: bool = False):
        """``fit_batch``: the batch size is the preset's, not the user's: lower it to what the
        data holds rather than refuse a folder of fewer images."""
        self.cfg, self.console, self.show_progress = cfg, console, progress
        self.progress_every = progress_every
        t = cfg.train
        self.world = world = world or distributed.World()
        self.hw = setup_hardware(t, world)
        check_networks(cfg.model)  # an unsupported model fails before the data is read
        self.data = self._load_data()
        self.cfg = cfg = self._with_classes(cfg)
        if fit_batch:
            self.cfg = cfg = self._fit_batch(cfg)
            t = cfg.train
        self.update = GanUpdate(cfg, self.hw, world)
        self.guard = (DivergenceGuard(t.guard_patience, t.guard_min_spread, t.loss == "bce",
                                      t.guard_min_diversity) if t.guard else None)
        self.rollbacks, self.lr_scale = 0, 1.0  # the guard's doing; saved in checkpoints
        self.best: dict | None = None  # {"metric", "value", "step"} of checkpoints/best.pt
        self.step, self._saved = 0, None  # _saved: the step of the newest checkpoint written
        self._stop = _Stop(self._say)
        self.order = EpochOrder(len(self.data), t.batch_size, t.seed, cfg.data.flip)
        self.real_batch = RealBatches(self.data.images, self.order, world, self.hw,
                                      self.data.labels, len(cfg.model.classes))
        self.real_distance = real_distance(self.data.images) if t.diversity_every else None
        if world.rank:  # each rank its own z and dropout; rank 0 keeps the single-process stream
            torch.manual_seed(rank_seed(t.seed, 0, world.rank))

    def _load_data(self) -> ImageSet:
        m, d = self.cfg.model, self.cfg.data
        if not d.path:
            raise OptionError("path", "no training data: name a folder, a .zip, IDX files or "
                              "builtin:fashion-mnist")
        data = load_dataset(d.path, m.resolution, m.channels, d.fit, tuple(d.background),
                            progress=self.show_progress, labels=d.class_labels)
        if data.skipped:
            first, why = data.skipped[0]
            self.console.print(f"[yellow]skipped {len(data.skipped)} unreadable file(s)[/] "
                               f"(first: {first}: {why})")
        self.console.print(f"data: {data.source}" + (f", {len(data.classes)} classes"
                                                       if data.classes else ""))
        return data

    def _with_classes(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with the data's class names as ``model.classes`` (a conditional pair); a
        run's own names (a resume) must be the data's."""
        have, names = cfg.model.classes, self.data.classes
        if not cfg.data.class_labels:
            if have:
                raise OptionError("class_labels", "model.classes is set but the data is read "
                                  "without labels: read them (data.class_labels=true)")
            return cfg
        if len(names) < 2:
            raise GantoolError(f"{self.data.source} has {len(names)} class; a conditional "
                               "pair needs two or more")
        if have and tuple(have) != names:
            raise GantoolError(f"the data's classes ({', '.join(names)[:200]}) differ from the "
                               f"run's model.classes ({', '.join(have)[:200]}); train on the "
                               "data the run was started with, or leave model.classes unset")
        counts = cfg.model.class_counts or tuple(  # a resume keeps the run's first ones
            int(n) for n in np.bincount(self.data.labels, minlength=len(names)))
        return replace(cfg, model=replace(cfg.model, classes=names, class_counts=counts))

    def _fit_batch(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` with a batch no larger than the data (the largest that splits over the
        processes), said in one line, where the preset's batch is larger than the data."""
        t, n, size = cfg.train, len(self.data), self.world.size
        fit = n - n % size
        if t.batch_size <= n or fit < 1:
            return cfg  # it fits, or nothing does (EpochOrder says so)
        self.console.print(f"note: batches of {fit} images, not {t.batch_size}: the data holds "
                           f"{n}", highlight=False)
        self.hw = replace(self.hw, local_batch=fit // size)
        return replace(cfg, train=replace(t, batch_size=fit))

    def _say(self, line: str) -> None:
        self.console.print(line, highlight=False, soft_wrap=True)

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return capture(self.cfg, self.update, self.step, self.order.steps_per_epoch,
                       {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale}, self.best)

    def load_state(self, state: dict) -> None:
        """Restore everything a checkpoint holds, so training continues exactly; a one-line
        error for a damaged or forged one."""
        try:
            restore(self.update, state)
            self.step = int(state["step"])
            guard = state.get("guard") or {}
            self.rollbacks = int(guard.get("rollbacks", 0))
            self.lr_scale = guard.get("lr_scale", 1.0)
            self.best = state.get("best")
            restore_rng(state["rng"], self.world, self.cfg.train.seed, self.step,
                        self.hw.device)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise GantoolError(f"the checkpoint does not fit the run it names "
                               f"({type(e).__name__}: {load_error(e)}); resume from another "
                               "checkpoint of the run") from None

    def _checkpoint_state(self) -> dict:
        """``state_dict`` plus, with several processes, every rank's RNG state (checking that
        all ranks hold the same networks and optimizers)."""
        self.update.standing_stats(self.step)
        state = self.state_dict()
        if self.world.enabled:
            gather_replicas(state, self.update, self.world, self.step, self.log)
        return state

    def _save(self, state: dict | None = None) -> dict:
        """Write ``state`` (default: this step's) as a step checkpoint and last.pt; a first
        Ctrl-C or SIGTERM meanwhile lets it finish (see ``_Stop``). -> the state written."""
        with self._stop.saving(f"the checkpoint at step {self.step}"):
            state = state if state is not None else self._checkpoint_state()
            if self.world.main:
                self.ckpt = save_checkpoint(state, self.run_dir / "checkpoints",
                                            self.cfg.train.keep, self._stop.check)
            self._saved = self.step
        return state

    # ---- the loop ----------------------------------------------------------------------------
    def train_step(self, real: torch.Tensor,
                   classes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One step of the update's phases on ``real`` (of one-hot ``classes``, if labelled)."""
        logs = self.update.step(real, self.step, self.lr_scale, classes)
        self.step += 1
        return logs

    def fit(self, run_dir: Path, log: RunLog | None = None,
            deadline: float = float("inf")) -> TrainResult:
        """Train to ``train.steps``, recording into ``log`` (default: metrics.jsonl only).

        ``deadline``: a ``time.perf_counter()`` value (the session's time budget): training
        stops at the first step past it, with a checkpoint, as a Ctrl-C does.
        Sample grids: one before the first step of a run, on ``train.sample_every``'s cadence,
        and one wherever training stops (the end, the budget, Ctrl-C, SIGTERM)."""
        t = self.cfg.train
        self.run_dir, self.log, self.ckpt = run_dir, log or RunLog(run_dir, self.world.main), None
        start_step, t0 = self.step, time.perf_counter()
        if self.world.main:
            self._write_session(deadline - t0 if deadline < float("inf") else None)
        self._good = cpu_copy(self.state_dict())  # where the divergence guard rolls back to
        self._next_diversity = _next(self.step, t.diversity_every)
        self.grids = GridClock(sample_cadence(t.sample_every), self.order.steps_per_epoch, t0)
        self._grid_step: int | None = None
        self._budget = (deadline, t0) if deadline < float("inf") else None  # said once
        with self._stop as stop:  # until the last file is written
            if self.step == 0 and t.sample_grid:
                self._sample(self._say, "before training")
            self._pace = (time.perf_counter(), self.step)  # after the first grid
            window = _Window()
            bar = StepProgress(self.console, "train", t.steps, self.step, self.show_progress,
                               self.progress_every, short=("D", "G", "img/s"), unit="step")
            with bar:
                while self.step < t.steps and not distributed.any_rank(
                        stop.signal is not None or time.perf_counter() >= deadline, self.world,
                        self.hw.device):
                    window.add(self.train_step(self.real_batch(self.step),
                                               self.real_batch.classes(self.step)))
                    bar.advance(self.step)
                    if self._due(t.log_every) and self._log_window(window, bar):
                        continue  # rolled back
                    self._scheduled(window, bar)
            interrupted = self.step < t.steps
            if interrupted and self._saved != self.step and (self.step > start_step
                                                             or self.step == 0):
                self._save()  # at step 0 too: the resume hint must work
            if self.step > start_step and self._grid_step != self.step and t.sample_grid:
                self._sample(self._say, "where training stopped")
        out_of_time = stop.signal is None and deadline < float("inf")  # no signal: the budget
        elapsed = time.perf_counter() - t0
        rate = (self.step - start_step) * t.batch_size / elapsed if elapsed > 0 else 0.0
        return TrainResult(run_dir, self.step, interrupted, self.ckpt, rate,
                           out_of_time=interrupted and out_of_time, stopped_by=stop.signal,
                           classes=len(self.cfg.model.classes))

    def _due(self, every: int) -> bool:
        return self.step % every == 0 or self.step == self.cfg.train.steps

    def _log_window(self, window: _Window, bar: StepProgress) -> bool:
        """Write the window's metrics row and let the guard judge it; True if it rolled back."""
        t = self.cfg.train
        now = time.perf_counter()
        images_per_s = window.steps * t.batch_size / (now - window.start)
        sums = distributed.mean_over_ranks(window.sums, self.world)  # one row, the same on all
        row = self._log_row(sums, window.steps, images_per_s)
        if self.real_distance and self.step >= self._next_diversity:
            self.update.standing_stats(self.step)
            row["diversity"] = round(self.sample_diversity(), 4)
            self._next_diversity = _next(self.step, t.diversity_every)
        self.log.write(row)
        if self._budget:
            self._say_budget(bar, now)
        bar.advance(self.step, {
            "epoch": f"{self.step / self.order.steps_per_epoch:.2f}", "D": f"{row['loss_d']:.3f}",
            "G": f"{row['loss_g']:.3f}", "D(x)": f"{row['d_real']:.2f}",
            "D(G(z))": f"{row['d_fake']:.2f}", "img/s": f"{images_per_s:,.0f}"})
        reason = self.guard.observe(row, window.steps) if self.guard else None
        window.reset(now)
        if not reason:
            return False
        self._good = self._roll_back(self._good, reason, bar)
        self._next_diversity = self.step + t.diversity_every
        bar.advance(self.step)
        return True

    def _say_budget(self, out: StepProgress, now: float) -> None:
        """Once, at the first metrics row: what the time budget buys at this session's pace,
        where it ends before the run's steps do."""
        (deadline, t0), (since, from_step) = self._budget, self._pace
        self._budget, steps = None, self.cfg.train.steps
        per_step = (now - since) / max(1, self.step - from_step)
        if now + (steps - self.step) * per_step <= deadline:
            return
        fits = self.step + int((deadline - now) / per_step)
        out.print(f"the time budget left ({clock(deadline - t0)}) buys about {fits:,} of the "
                  f"{steps:,} steps at {per_step:.3g} s a step (all of them: "
                  f"{clock(now - t0 + (steps - self.step) * per_step)}); training stops there "
                  "with a checkpoint and a sample grid, and a resume goes on from it")

    def _scheduled(self, window: _Window, bar: StepProgress) -> None:
        """The sample grid, evaluation and checkpoint due at this step."""
        t, main, spe = self.cfg.train, self.world.main, self.order.steps_per_epoch
        evaluates = t.eval_every and self._due(t.eval_every)
        if self._grid_due():
            self._sample(bar.print, f"epoch {self.step / spe:.2f}")
        if evaluates:
            self.update.standing_stats(self.step)  # on every rank: SyncBatchNorm measures together
            if main:
                self._evaluate(bar)
            self.best = distributed.broadcast_object(self.best, self.world)
        if self._due(t.checkpoint_every or spe):
            state = self._save()
            if main:
                bar.mark()
            if self._healthy(window.sums):
                self._good = cpu_copy(state)

    def _grid_due(self) -> bool:
        """Whether a sample grid is due at this step (the same answer on every rank)."""
        t = self.cfg.train
        if not t.sample_grid or self.step == t.steps:
            return bool(t.sample_grid)
        due = self.grids.due(self.step, time.perf_counter())
        return distributed.any_rank(due, self.world, self.hw.device) if self.grids.by_time else due

    def _sample(self, say, when: str) -> None:
        """This step's sample grid (every rank measures G_ema's standing statistics; rank 0
        writes), its path said with ``when``."""
        self.update.standing_stats(self.step)
        if self.world.main:
            with self._stop.saving(f"the sample grid at step {self.step}", at_once=True):
                grid = self.write_samples()
            say(f"step {self.step} ({when}): sample grid {grid}")
        self._grid_step = self.step
        self.grids.wrote(time.perf_counter())

    def _log_row(self, sums: dict, n: int, images_per_s: float) -> dict:
        row = {"step": self.step, "epoch": round(self.step / self.order.steps_per_epoch, 4)}
        row.update({k: float(v) / n for k, v in sums.items()})
        row.update(lr_g=float(self.update.opt_G.param_groups[0]["lr"]),
                   lr_d=float(self.update.opt_D.param_groups[0]["lr"]),
                   images_per_s=round(images_per_s, 2), time=round(time.time(), 3))
        return row

    def _write_session(self, time_left: float | None) -> None:
        """``RUN/session.json``: what this training session runs on (the report's header)."""
        session = {"device": str(self.hw.device), "processes": self.world.size,
                   "precision": str(self.hw.amp_dtype or torch.float32).removeprefix("torch."),
                   "gantool_version": gantool.__version__, "torch_version": torch.__version__,
                   "from_step": self.step, "started": round(time.time(), 3),
                   "time_left_s": None if time_left is None else round(time_left, 1)}
        with atomic_write(self.run_dir / SESSION) as f:
            f.write((json.dumps(session, indent=2) + "\n").encode())

    # ---- the divergence guard ----------------------------------------------------------------
    def _healthy(self, sums: dict[str, torch.Tensor]) -> bool:
        """Whether the state right now is one the guard may roll back to."""
        if self.guard is None:
            return True
        return self.guard.healthy and all(bool(torch.isfinite(v)) for v in sums.values())

    def _roll_back(self, good: dict, reason: str, console: StepProgress) -> dict:
        """Return to the last good state, drop what came after it, lower the learning rates;
        raise GantoolError once ``guard_max_rollbacks`` rollbacks did not help."""
        t, ckpt_dir = self.cfg.train, self.run_dir / "checkpoints"
        at_step, rollbacks, lr_scale = self.step, self.rollbacks + 1, self.lr_scale
        self.load_state(good)
        if self.world.main:
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
        state = self._checkpoint_state()
        self.log.write(event)
        self.ckpt = ckpt_dir / "last.pt"
        self._save(state)
        if given_up:
            raise GantoolError(
                f"training diverged {rollbacks} times (last: {reason} at step {at_step}); "
                f"stopped. The last good checkpoint is {self.ckpt}: lower train.lr_g and "
                "train.lr_d, try another train.seed, or raise train.guard_max_rollbacks")
        console.print(f"[yellow]divergence guard:[/] {reason} at step {at_step}; rolled back to "
                      f"step {self.step}, learning rates x{self.lr_scale:g} "
                      f"(rollback {rollbacks} of at most {t.guard_max_rollbacks})")
        return cpu_copy(state)

    # ---- what the run draws from itself ------------------------------------------------------
    def sample_source(self) -> NetworkGenerator:
        """G_ema (or G) as a Generator: what sample grids and evaluations draw from."""
        m, up = self.cfg.model, self.update
        net = up.G_ema if up.G_ema is not None else up.G
        return NetworkGenerator(net, m.nz, m.prior, self.hw.device, len(m.classes))

    def sample_diversity(self) -> float:
        return sample_diversity(self.sample_source(), self.cfg.model.truncation,
                                self.hw.local_batch, self.real_distance)

    def write_samples(self) -> Path:
        """A grid of the fixed seeds 0..sample_grid-1 from G_ema (or G) in eval mode; for a
        conditional pair, one row per class of seeds 0..sample_grid/classes-1."""
        n, k = self.cfg.train.sample_grid, len(self.cfg.model.classes)
        cols = max(1, n // k) if k else None
        seeds = [s for _ in range(k) for s in range(cols)] if k else list(range(n))
        classes = [c for c in range(k) for _ in range(cols)] if k else None
        images = self.sample_source().generate(seeds, self.cfg.model.truncation, classes)
        grid = make_grid(images, cols)
        self.log.image("samples", grid, self.step)
        return save_image(grid, self.run_dir / "samples" / f"step-{self.step:07d}.png")

    def _evaluate(self, console: StepProgress) -> None:
        """FID/KID of G_ema (or G) on seeds 0..eval_num-1 against the training images; logs
        an ``eval`` row and keeps ``checkpoints/best.pt`` at the best value so far."""
        from gantool.metrics.evaluate import class_mix, score_generator

        t, m = self.cfg.train, self.cfg.model
        result = score_generator(self.sample_source(), self.data.images, [t.eval_metric],
                                 t.eval_num, truncation=m.truncation,
                                 device=str(self.hw.device),
                                 classes=class_mix(t.eval_num, m.class_counts))
        value = result[t.eval_metric]
        self.log.write({"step": self.step, "event": "eval", t.eval_metric: value,
                        "num": t.eval_num, "time": round(time.time(), 3)})
        better = self.best is None or value < self.best["value"]
        if better:
            self.best = {"metric": t.eval_metric, "value": value, "step": self.step}
            with self._stop.saving(f"best.pt at step {self.step}"):
                write_checkpoint(self.state_dict(), self.run_dir / "checkpoints" / "best.pt",
                                 self._stop.check)
        console.print(f"step {self.step}: {t.eval_metric.upper()} {value:.4g}"
                      + (" (best so far: checkpoints/best.pt)" if better else
                         f" (best {self.best['value']:.4g} at step {self.best['step']})"))


def _next(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step`` (0 when never)."""
    return (step // every + 1) * every if every else 0


class _Stop:
    """Ctrl-C and SIGTERM while a run trains. Between saves the first asks the loop to stop at
    the next step (a checkpoint follows) and a second aborts. During a save (a checkpoint,
    best.pt, a sample grid) the first lets it finish, saying so, and stops the run after it; a
    second aborts the save: a checkpoint's where its file is whole but not yet named (``check``;
    torch.save cut in two loses the Ctrl-C or turns it into a RuntimeError), a grid's at once.
    An abort is the caller's handler's (the CLI's: "interrupted", exit 130 or 143)."""

    def __init__(self, say):
        self.signal: int | None = None  # the first signal: the run stops at the next step
        self._say, self._previous = say, {}
        self._saving, self._at_once, self._hit, self._pending = None, False, False, None

    def __enter__(self) -> _Stop:
        self.signal = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handler)
                              for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    @contextmanager
    def saving(self, what: str, at_once: bool = False) -> Iterator[None]:
        """Write ``what`` (e.g. "the checkpoint at step 900") under the rules above; a second
        signal aborts at ``check`` or, ``at_once``, wherever it lands. One that comes after the
        file was named aborts nothing: the save is whole, the run stops as asked."""
        self._saving, self._at_once, self._hit, self._pending = what, at_once, False, None
        try:
            yield
        finally:
            self._saving = self._pending = None

    def check(self) -> None:
        """Abort the save here if a second signal asked for it (its file is whole, unnamed)."""
        if self._pending is not None:
            self._say(f"aborted {self._saving}; the checkpoints before it are intact")
            self._abort(self._pending, None)

    def _handler(self, signum, frame) -> None:
        again = "press Ctrl-C again" if signum == signal.SIGINT else "send SIGTERM again"
        if self._saving is not None and not self._hit:
            self._hit, self.signal = True, self.signal or signum
            self._say(f"finishing {self._saving}; {again} to abort it")
        elif self._saving is not None and not self._at_once:
            self._pending = signum
        elif self.signal is None:
            self.signal = signum
        else:
            self._abort(signum, frame)

    def _abort(self, signum: int, frame) -> None:
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt
