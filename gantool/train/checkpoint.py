"""Full-state checkpoints: atomic writes, rotation, discovery, and loading a generator.

A checkpoint is a plain dict of tensors and primitives (``torch.load(weights_only=True)`` opens
it) that carries its own config, so ``load_generator(path)`` rebuilds the network with no flags.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from gantool.config import RunConfig
from gantool.errors import GantoolError
from gantool.fileio import atomic_write, fsync_dir
from gantool.models import build_generator

FORMAT = "gantool-checkpoint-v1"
STEP_RE = re.compile(r"^step-(\d+)\.pt$")
LAST = "last.pt"


def step_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temp file, fsync and rename: never a half-written checkpoint."""
    try:
        with atomic_write(path) as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError
        if isinstance(e, RuntimeError) and shutil.disk_usage(path.parent).free > 2**30:
            raise
        why = getattr(e, "strerror", None) or "No space left on device"
        raise GantoolError(f"cannot write {path}: {why}; the checkpoints before it are "
                           "intact: free some space and resume") from None


def save_checkpoint(state: dict[str, Any], ckpt_dir: Path, keep: int) -> Path:
    """Write ``state`` as ``step-NNNNNNN.pt``, point ``last.pt`` at it, keep the newest ``keep``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / step_name(int(state["step"]))
    atomic_torch_save({"format": FORMAT, **state}, path)
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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Open a gantool checkpoint safely (weights only); a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise GantoolError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated, or not a torch file
        raise GantoolError(f"cannot read checkpoint {path}: {_first_line(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GantoolError(f"{path} is not a gantool checkpoint")
    for key, kind in [("config", dict), ("G", dict), ("step", int)]:
        if not isinstance(state.get(key), kind):
            raise GantoolError(f"{path} is a damaged gantool checkpoint (its {key!r} entry is "
                               "missing or malformed); use another checkpoint of the run")
    return state


def resolve_resume(target: str | os.PathLike) -> tuple[Path, dict]:
    """A run directory or a checkpoint file -> (run_dir, newest readable checkpoint state).

    For a run directory the newest step checkpoint that loads wins (a crash can interrupt
    ``last.pt``'s update, never a step file's content). Leftover temp files are removed.
    """
    target = Path(target)
    if target.is_file():
        return run_dir_of(target), load_checkpoint(target)
    ckpt_dir = target / "checkpoints"
    if not ckpt_dir.is_dir():
        raise GantoolError(f"{target} is neither a checkpoint nor a run directory "
                           "with checkpoints/")
    for tmp in ckpt_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    errors = []
    for path in step_checkpoints(ckpt_dir) + [ckpt_dir / LAST]:
        try:
            return target, load_checkpoint(path)
        except GantoolError as e:
            errors.append(str(e))
    detail = f": {errors[0]}" if errors else ""
    raise GantoolError(f"no readable checkpoint in {ckpt_dir}{detail}")


def run_dir_of(target: str | os.PathLike) -> Path:
    """The run directory a ``--resume`` target names: itself, or a checkpoint file's run."""
    target = Path(target)
    if not target.is_file():
        return target
    return target.parent.parent if target.parent.name == "checkpoints" else target.parent


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for one training process: a second one (a resume started twice) gets
    a one-line error instead of writing the same steps again. The lock is the kernel's
    (flock), so it dies with its process: no stale lock after a crash or a kill."""
    import fcntl

    try:
        fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise GantoolError(f"cannot write in {run_dir}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 20).decode(errors="replace").strip() or "?"
            raise GantoolError(f"another gantool process (pid {pid}) is training in {run_dir}; "
                               "wait for it to finish or stop it, then resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def load_generator(path: str | os.PathLike, ema: bool = True, device: str | torch.device = "cpu"):
    """Rebuild the generator stored in a checkpoint, in eval mode -> (module, RunConfig).

    ``ema=True`` takes the EMA weights when the run kept them.
    """
    g, cfg = generator_from_state(load_checkpoint(path, map_location=device), path, ema)
    return g.to(device), cfg


def generator_from_state(state: dict, path: str | os.PathLike, ema: bool = True):
    """``load_generator`` for a checkpoint already read: a one-line error when its config or
    weights do not describe one generator (a forged or damaged file)."""
    try:
        cfg = RunConfig.from_dict(state["config"])
        g = build_generator(cfg.model)
    except GantoolError as e:
        raise GantoolError(f"{path}: its configuration is invalid ({e})") from None
    weights = state.get("G_ema") if ema and state.get("G_ema") is not None else state["G"]
    try:
        g.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise GantoolError(f"{path}: its weights do not fit the generator its configuration "
                           f"describes ({load_error(e)})") from None
    return g.eval(), cfg


def load_error(e: BaseException) -> str:
    """The telling line of a failed ``load_state_dict``: its second names the tensor."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return lines[min(1, len(lines) - 1)].strip()[:160]


def _link_last(path: Path) -> None:
    """Point ``last.pt`` at ``path``: a hard link (a copy where links fail), swapped atomically."""
    last = path.parent / LAST
    tmp = path.parent / f".{LAST}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:
        import shutil

        shutil.copyfile(path, tmp)
    os.replace(tmp, last)
    fsync_dir(path.parent)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
