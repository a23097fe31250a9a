"""A training run: start one in a new numbered folder, or resume one from its checkpoints.

Under ``torchrun`` every process runs the same training on its slice of each global batch (see
``gantool.train.distributed``); only rank 0 writes files (run folder, metrics, samples,
checkpoints, evaluations). The training itself is ``gantool.train.trainer``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from pathlib import Path

from rich.console import Console

from gantool.config import RunConfig, apply_overrides, run_config
from gantool.errors import GantoolError, OptionError
from gantool.progress import PLAIN_EVERY_S
from gantool.train import distributed
from gantool.train.run_files import (
    resolve_resume,
    run_dir_of,
    run_lock,
    set_aside,
    step_checkpoints,
    step_of,
)
from gantool.train.runlog import METRICS, RunLog, tensorboard_writer_class
from gantool.train.trainer import Trainer, TrainResult

__all__ = ["RESUME_CHANGES", "TrainResult", "Trainer", "new_run_dir", "run"]

RUN_RE = re.compile(r"^(\d{5})-")
# what a resumed run may change: its length, and how often it logs and draws sample grids (the
# divergence guard judges at metrics rows, so log_every moves its decisions within a window)
RESUME_CHANGES = ("train.steps", "train.sample_every", "train.sample_grid", "train.log_every")


def run(cfg: RunConfig | None = None, out: str | os.PathLike = "runs",
        resume: str | os.PathLike | None = None, steps: int | None = None,
        console: Console | None = None, progress: bool = True,
        progress_every: float = PLAIN_EVERY_S, max_time: float | None = None,
        fit_batch: bool = False, changes: dict | None = None,
        run_line: Callable[[Path], str] | None = None) -> TrainResult:
    """Start a new run from ``cfg`` under ``out``, or continue the run named by ``resume``.

    On resume the configuration comes from the checkpoint; ``steps`` and ``changes`` (keys of
    ``RESUME_CHANGES`` -> values) may change it.
    ``progress_every``: seconds between status lines where stderr is not a terminal.
    ``max_time``: this session's time budget in seconds (a job's wall-time limit): training
    stops at the first step past it with a checkpoint (``TrainResult.out_of_time``).
    ``fit_batch``: the batch size is the preset's (the user named none): a smaller dataset
    lowers it, with a line, instead of stopping the run.
    ``run_line``: the line that names a new run's folder once it is made (default: ``run:
    RUN_DIR``); the CLI adds how to resume it.
    """
    deadline = time.perf_counter() + max_time if max_time else float("inf")  # from the start
    changes = dict(changes or {})
    if steps is not None:
        changes["train.steps"] = steps
    other = sorted(set(changes) - set(RESUME_CHANGES))
    if resume is not None and other:
        raise OptionError(other[0].partition(".")[2], f"a resumed run keeps its configuration "
                          f"but for {', '.join(RESUME_CHANGES)} (got {', '.join(other)})")
    with ExitStack() as held:
        return _run(cfg, out, resume, changes, console or Console(stderr=True), progress,
                    progress_every, deadline, held, fit_batch and resume is None,
                    run_line or _run_line)


def _run_line(run_dir: Path) -> str:
    return f"run: {run_dir}"


def _resumed(resume, world, console, held: ExitStack) -> tuple[Path, dict]:
    """(run_dir, state) of a resume target, locked; damaged newer checkpoints set aside
    (and said so), newer intact ones refused."""
    if world.main and run_dir_of(resume).is_dir():  # else resolve_resume says what is wrong
        held.enter_context(run_lock(run_dir_of(resume)))
    run_dir, state, damaged = resolve_resume(resume)
    if world.main:
        for line in set_aside(damaged, state["step"]):
            console.print(line, highlight=False, soft_wrap=True)
    newer = [p.name for p in step_checkpoints(run_dir / "checkpoints")
             if step_of(p) > state["step"] and p not in dict(damaged)]
    if newer:
        raise GantoolError(f"{run_dir} has checkpoints past step {state['step']} "
                           f"({', '.join(newer)}); resuming from an older one would "
                           "overwrite them: resume the run directory, or move them away")
    return run_dir, state


def _run(cfg, out, resume, changes: dict, console, progress, progress_every, deadline: float,
         held: ExitStack, fit_batch: bool, run_line: Callable[[Path], str]) -> TrainResult:
    state = None
    world = distributed.from_env()
    if resume is not None:
        run_dir, state = _resumed(resume, world, console, held)
        cfg = apply_overrides(run_config(state["config"]), changes)
        if state["step"] >= cfg.train.steps:
            raise OptionError("steps", f"{run_dir} already reached step {state['step']} of "
                              f"{cfg.train.steps}; ask for more steps to train further")
    if cfg is None:
        raise ValueError("run() needs a RunConfig or a run to resume")
    if cfg.train.tensorboard and world.main:
        tensorboard_writer_class()  # a missing extra is one line before any file is made
    if not world.main:  # one voice: rank 0 reports, the others only train
        console, progress = Console(stderr=True, quiet=True), False
    trainer = Trainer(cfg, console, progress, world, progress_every, fit_batch)  # before files
    cfg = trainer.cfg  # with the data's class names, for a conditional pair
    try:
        if state is None:
            run_dir = None
            if world.main:
                run_dir = new_run_dir(Path(out), cfg.name)
                held.enter_context(run_lock(run_dir))
                (run_dir / "config.json").write_text(cfg.to_json() + "\n")
                console.print(run_line(run_dir), highlight=False, soft_wrap=True)
            run_dir = distributed.broadcast_object(run_dir, world)
            log = held.enter_context(closing(RunLog(run_dir, world.main,
                                                    cfg.train.tensorboard)))
            log.text("config", f"```\n{cfg.to_json()}\n```")
        else:
            trainer.load_state(state)
            log = held.enter_context(closing(RunLog(run_dir, world.main,
                                                    cfg.train.tensorboard)))
            bad = log.truncate(trainer.step)
            if bad:
                console.print(f"{run_dir / METRICS}: dropped {bad} damaged line(s) it could "
                              "not read", highlight=False, soft_wrap=True)
            console.print(f"resuming {run_dir} at step {trainer.step}")
        return trainer.fit(run_dir, log, deadline)
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
