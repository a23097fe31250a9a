"""The gantool checkpoint record: its format tag and entries, writing one, reading one (an
older writer's included), rebuilding its generator, and what it says about itself.

A checkpoint is a plain dict of tensors and primitives (``torch.load(weights_only=True)`` opens
it) that carries its own config, so ``load_generator(path)`` rebuilds the network with no flags.
Only the config's model section is read to draw (``gantool.config.model_config``): the training
options of the version that wrote a checkpoint do not matter to drawing from it. Training fills
the record (``gantool.train.state.capture``); a run's step files, ``last.pt`` and their rotation
are ``gantool.train.run_files``', ``best.pt`` the trainer's, all written through
``write_checkpoint``.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from gantool.config import ModelConfig, model_config
from gantool.errors import GantoolError, first_line
from gantool.fileio import atomic_write
from gantool.models import build_generator

FORMAT = "gantool-checkpoint-v1"
# The record's entries. Drawing needs the first three; resuming needs them all.
REQUIRED = {"config": dict, "G": dict, "step": int}
ENTRIES = {
    "config": "the run's whole configuration (RunConfig.to_dict)",
    "G": "the generator's weights",
    "step": "training steps done",
    "G_ema": "the EMA generator's weights, or None when the run keeps none",
    "D": "the discriminator's weights",
    "epoch": "passes over the data done (a fraction)",
    "opt_G": "G's optimizer state", "opt_D": "D's optimizer state",
    "scaler": "the mixed-precision gradient scaler's state",
    "rng": "every process's RNG state, so that a resume continues bit for bit",
    "guard": "the divergence guard's rollbacks and learning-rate scale",
    "best": "the best evaluation so far ({metric, value, step}), or None",
    "origin": "where an imported generator came from ({kind, tool, file, bytes, sha256}), or "
              "None for one gantool trained",
}


def record(**entries: Any) -> dict:
    """A checkpoint record of this gantool version: ``entries`` (see ENTRIES) with the format
    tag and the version that wrote it."""
    unknown = sorted(set(entries) - set(ENTRIES))
    missing = sorted(set(REQUIRED) - set(entries))
    if unknown or missing:
        raise ValueError(f"a checkpoint record has no entry {unknown} / needs {missing}")
    from gantool import __version__

    return {"format": FORMAT, "gantool_version": __version__, **entries}


def write_checkpoint(rec: dict, path: Path,
                     before_naming: Callable[[], None] | None = None) -> None:
    """Write a ``record`` through a temp file, fsync and rename: never a half-written
    checkpoint; a full disk is one line saying the earlier checkpoints are intact.
    ``before_naming`` runs once the record is written, before the file is synced and named:
    what it raises leaves no file (training aborts a save there on a second Ctrl-C)."""
    if rec.get("format") != FORMAT:
        raise ValueError("write_checkpoint takes a record() of this version")
    try:
        with atomic_write(path) as f:
            torch.save(rec, f)
            if before_naming is not None:
                before_naming()
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError
        if isinstance(e, RuntimeError) and shutil.disk_usage(path.parent).free > 2**30:
            raise
        why = getattr(e, "strerror", None) or "No space left on device"
        raise GantoolError(f"cannot write {path}: {why}; the checkpoints before it are "
                           "intact: free some space and resume") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Open a gantool checkpoint safely (weights only); a clear error for anything else. The
    record comes back with every entry of ENTRIES, None where the file has none."""
    path = Path(path)
    if not path.is_file():
        raise GantoolError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns of a pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated, or not a torch file
        raise GantoolError(f"cannot read checkpoint {path}: {_unreadable(path, e)}") from None
    written = state.get("format") if isinstance(state, dict) else None
    if written != FORMAT:
        newer = isinstance(written, str) and written.startswith("gantool-checkpoint-")
        raise GantoolError(f"{path} is a {written} file, which this gantool does not read: "
                           "upgrade gantool" if newer else f"{path} is not a gantool checkpoint")
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise GantoolError(f"{path} is a damaged gantool checkpoint (its {key!r} entry is "
                               "missing or malformed); use another checkpoint of the run")
    return {**dict.fromkeys(ENTRIES), "gantool_version": None, **state}


def _unreadable(path: Path, e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``path``, said about the file: not
    PyTorch's advice to load it with ``weights_only=False``, which would run an unknown file's
    code."""
    import zipfile

    with path.open("rb") as f:
        head = f.read(4)
    found = re.search(r"GLOBAL ([\w.]+)", str(e))  # the weights-only unpickler names the class
    if head == b"PK\x03\x04" and found:
        return (f"it holds a pickled {found[1]}, a Python object, not a gantool checkpoint's "
                "tensors; gantool never runs a file's code (a generator of another tool: see "
                "gantool import)")
    if head == b"PK\x03\x04":  # torch's zip format, cut short or damaged
        return (f"the file is damaged ({first_line(e, 80)})" if zipfile.is_zipfile(path) else
                "the file is truncated: its end is missing (an interrupted copy or write?)")
    if head[:1] == b"\x80":
        return ("it is a Python pickle, not a gantool checkpoint (a PyTorch zip file of "
                "tensors); a generator of another tool: see gantool import")
    return "the file is empty" if not head else "it is not a PyTorch file"


def describe(state: dict, path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint says about itself (``gantool info``): run, step, the model, the
    generator's size and cost; both sets of weights are loaded, so it vouches for the file."""
    from gantool.models.layers import generator_cost

    for ema in (False, True):
        net, m, _, _ = generator_from_state(state, path, ema)
    params, macs = generator_cost(net, m.nz)
    base = {"resolution": m.resolution, "channels": m.channels, "nz": m.nz}
    cost = f"{params / 1e6:.2f} M parameters, {macs / 1e9:.3g} G multiply-adds per image"
    common = {"generator": cost, "prior": m.prior, "truncation": m.truncation,
              "classes": m.classes, "weights sha256": weights_sha256(net),
              "gantool_version": state["gantool_version"]}
    origin = state.get("origin")
    if isinstance(origin, dict):  # imported: where from, not a run
        shape = m.arch_params.get("architecture")
        return {"kind": f"gantool checkpoint, imported {origin.get('kind')}",
                "imported from": f"{origin.get('file')} ({origin.get('tool')}, "
                                 f"{origin.get('bytes')} bytes)",
                "source sha256": origin.get("sha256"), **base,
                "arch": f"{m.arch} ({shape})" if shape else m.arch,
                **({"w": m.arch_params["w_dim"]} if "w_dim" in m.arch_params else {}),
                **common}
    return {"kind": "gantool checkpoint", "step": state["step"],
            "run": state["config"].get("name"), **base, "arch": f"{m.arch} / {m.d_arch}",
            **common, "ema": state["G_ema"] is not None}


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
    weights = state["G_ema"] if ema and state.get("G_ema") is not None else state["G"]
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


def weights_sha256(net: torch.nn.Module) -> str:
    """The SHA-256 of a generator's weights and buffers (names, types, shapes, bytes, in name
    order): the model's identity in a render's manifest, the same for a checkpoint and every
    export of it (``ModelInfo.weights_sha256``), whatever file holds them."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        flat = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{flat.dtype}:{tuple(t.shape)};".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()
