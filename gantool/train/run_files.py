"""A run's files: its step checkpoints and last.pt, rotation, discovery, resume, the run lock.

The record itself (its entries, writing, reading, the generator it holds) is
``gantool.models.checkpoint``'s, which inference imports without importing training.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gantool.errors import GantoolError
from gantool.fileio import folder_lock, fsync_dir
from gantool.models.checkpoint import load_checkpoint, write_checkpoint

STEP_RE = re.compile(r"^step-(\d+)\.pt$")
LAST = "last.pt"


def step_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def save_checkpoint(state: dict[str, Any], ckpt_dir: Path, keep: int,
                    before_naming: Callable[[], None] | None = None) -> Path:
    """Write the record ``state`` as ``step-NNNNNNN.pt``, point ``last.pt`` at it, keep the
    newest ``keep``. ``before_naming``: see ``write_checkpoint``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / step_name(int(state["step"]))
    write_checkpoint(state, path, before_naming)
    _link_last(path)
    for old in step_checkpoints(ckpt_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def step_of(path: Path) -> int:
    """The step of a ``step-NNNNNNN.pt`` file."""
    return int(STEP_RE.match(path.name).group(1))


def step_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Step checkpoints in ``ckpt_dir``, newest first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step-*.pt")
             if (m := STEP_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def resolve_resume(target: str | os.PathLike) -> tuple[Path, dict, list[tuple[Path, str]]]:
    """A run directory or a checkpoint file -> (run_dir, newest readable checkpoint state, the
    newer step checkpoints that would not load, each with the reason).

    For a run directory the newest step checkpoint that loads wins (a crash can interrupt
    ``last.pt``'s update, never a step file's content). Leftover temp files are removed.
    """
    target = Path(target)
    if target.is_file():
        return run_dir_of(target), load_checkpoint(target), []
    ckpt_dir = target / "checkpoints"
    if not ckpt_dir.is_dir():
        raise GantoolError(f"{target} is neither a checkpoint nor a run directory "
                           "with checkpoints/")
    for tmp in ckpt_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    damaged = []
    for path in step_checkpoints(ckpt_dir) + [ckpt_dir / LAST]:
        try:
            return target, load_checkpoint(path), damaged
        except GantoolError as e:
            damaged.append((path, str(e)))
    detail = f": {damaged[0][1]}" if damaged else ""
    raise GantoolError(f"no readable checkpoint in {ckpt_dir}{detail}")


def set_aside(damaged: list[tuple[Path, str]], step: int) -> list[str]:
    """Rename damaged step checkpoints to ``NAME.damaged`` (kept, out of the way of rotation
    and of the "newer checkpoints" check) and point ``last.pt`` at step ``step``'s file (it
    was a link to the newest, damaged one); one line per file for the console."""
    lines = []
    for path, why in damaged:
        path.rename(path.with_name(path.name + ".damaged"))
        lines.append(f"{path} is damaged ({why}); kept as {path.name}.damaged, resuming from "
                     f"step {step}")
    resumed = damaged[0][0].parent / step_name(step) if damaged else None
    if resumed is not None and resumed.is_file():
        _link_last(resumed)
    return lines


def run_dir_of(target: str | os.PathLike) -> Path:
    """The run directory a resume target names: itself, or a checkpoint file's run."""
    target = Path(target)
    if not target.is_file():
        return target
    return target.parent.parent if target.parent.name == "checkpoints" else target.parent


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for one training process: a second one (a resume started twice) gets
    a one-line error instead of writing the same steps again."""
    with folder_lock(run_dir, f"another gantool process (pid {{pid}}) is training in "
                              f"{run_dir}; wait for it to finish or stop it, then resume"):
        yield


def _link_last(path: Path) -> None:
    """Point ``last.pt`` at ``path``: a hard link (a copy where links fail), swapped atomically."""
    last = path.parent / LAST
    tmp = path.parent / f".{LAST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(path, tmp)
        except OSError:
            import shutil

            shutil.copyfile(path, tmp)
        os.replace(tmp, last)
    except BaseException:  # a full disk mid-copy, a Ctrl-C that aborts the save: no temp left
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
