"""A run's state as a checkpoint record (``gantool.models.checkpoint``) holds it, and back:
networks, optimizers, scaler, the step, the guard's counters, the best evaluation, and every
process's RNG state, so that ``--resume`` continues bit for bit (with the same number of
processes)."""

from __future__ import annotations

import time

import torch

from gantool.config import RunConfig
from gantool.errors import GantoolError
from gantool.models.checkpoint import record
from gantool.train import distributed
from gantool.train.runlog import RunLog
from gantool.train.update import GanUpdate


def capture(cfg: RunConfig, up: GanUpdate, step: int, steps_per_epoch: int, guard: dict,
            best: dict | None) -> dict:
    """Everything to continue from ``step`` (tensors shared with the live run: copy to keep)."""
    rng = {"torch": torch.get_rng_state()}
    if up.hw.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return record(
        config=cfg.to_dict(), step=step, epoch=step / steps_per_epoch,
        G=up.G.state_dict(), D=up.D.state_dict(),
        G_ema=up.G_ema.state_dict() if up.G_ema is not None else None,
        opt_G=_plain_lr(up.opt_G.state_dict()), opt_D=_plain_lr(up.opt_D.state_dict()),
        scaler=up.scaler.state_dict(), rng=rng, guard=guard, best=best, origin=None)


def restore(up: GanUpdate, state: dict) -> None:
    """Networks, optimizers and scaler from ``state``; raises on a state that does not fit."""
    if up.captured is not None:
        up.captured.reset()  # the optimizers get new state tensors: capture again
    up.G.load_state_dict(state["G"])
    up.D.load_state_dict(state["D"])
    if up.G_ema is not None:
        up.G_ema.load_state_dict(state["G_ema"])
        up.stats_step = None
    up.opt_G.load_state_dict(state["opt_G"])
    up.opt_D.load_state_dict(state["opt_D"])
    if state.get("scaler"):
        up.scaler.load_state_dict(state["scaler"])


def restore_rng(rng: dict, world: distributed.World, seed: int, step: int,
                device: torch.device) -> None:
    """This process's RNG streams: exactly as saved with the same number of processes; with
    another number, rank 0 continues and the others start fresh streams."""
    ranks = rng.get("ranks") or [rng["torch"]]
    if len(ranks) == world.size:
        torch.set_rng_state(ranks[world.rank])
    else:
        torch.set_rng_state(ranks[0])
        if world.rank:
            torch.manual_seed(rank_seed(seed, step, world.rank))
    if device.type == "cuda" and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])


def gather_replicas(state: dict, up: GanUpdate, world: distributed.World, step: int,
                    log: RunLog) -> None:
    """Add every rank's RNG state to ``state``; check (and record in ``log``) that all ranks
    hold the same networks and optimizers."""
    state["rng"]["ranks"] = distributed.gather(state["rng"]["torch"], world)
    prints = distributed.gather(distributed.fingerprint(*up.networks()), world)
    log.write({"step": step, "event": "replicas", "world": world.size, "sha256": prints,
               "time": round(time.time(), 3)})
    if len(set(prints)) > 1:
        raise GantoolError(f"the {world.size} processes hold different networks at "
                           f"step {step}: a data-parallel bug; please report it")


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of process ``rank`` (rank 0 of a single process: ``seed + step``)."""
    return seed + step + 104_729 * rank


def cpu_copy(obj):
    """A detached CPU copy of a (nested) state dict, so later training cannot change it."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def _plain_lr(opt_state: dict) -> dict:
    """An optimizer state dict with float learning rates (a captured step keeps them as device
    tensors), so that any run, on any device, can load it."""
    for group in opt_state["param_groups"]:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
    return opt_state
