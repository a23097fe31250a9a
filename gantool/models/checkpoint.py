"""Gantool checkpoint files, as inference reads them: open one safely, rebuild its generator.

A checkpoint is a plain dict of tensors and primitives (``torch.load(weights_only=True)`` opens
it) that carries its own config, so ``load_generator(path)`` rebuilds the network with no flags.
Only the config's model section is read (``gantool.config.model_config``): the training options
of the version that wrote a checkpoint do not matter to drawing from it. Writing a run's
checkpoints (rotation, last.pt, resume) is ``gantool.train.checkpoint``'s.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch

from gantool.config import ModelConfig, model_config
from gantool.errors import GantoolError
from gantool.fileio import atomic_write
from gantool.models import build_generator

FORMAT = "gantool-checkpoint-v1"


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


class StoredGenerator(NamedTuple):
    """A checkpoint's generator, in eval mode, and what it says about itself."""

    net: torch.nn.Module
    model: ModelConfig
    config: dict  # the run's whole stored configuration, as written (provenance, name, data)
    step: int


def load_generator(path: str | os.PathLike, ema: bool = True,
                   device: str | torch.device = "cpu") -> StoredGenerator:
    """Rebuild the generator stored in a checkpoint, in eval mode on ``device``.

    ``ema=True`` takes the EMA weights when the run kept them.
    """
    stored = generator_from_state(load_checkpoint(path, map_location=device), path, ema)
    return stored._replace(net=stored.net.to(device))


def generator_from_state(state: dict, path: str | os.PathLike,
                         ema: bool = True) -> StoredGenerator:
    """``load_generator`` for a checkpoint already read: a one-line error when its model
    section or weights do not describe one generator (a forged or damaged file)."""
    try:
        model = model_config(state["config"])
        g = build_generator(model)
    except GantoolError as e:
        raise GantoolError(f"{path}: its configuration is invalid ({e})") from None
    weights = state.get("G_ema") if ema and state.get("G_ema") is not None else state["G"]
    try:
        g.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise GantoolError(f"{path}: its weights do not fit the generator its configuration "
                           f"describes ({load_error(e)})") from None
    return StoredGenerator(g.eval(), model, state["config"], int(state["step"]))


def load_error(e: BaseException) -> str:
    """The telling line of a failed ``load_state_dict``: its second names the tensor."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return lines[min(1, len(lines) - 1)].strip()[:160]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
