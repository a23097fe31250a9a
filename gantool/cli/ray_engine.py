"""`gantool generate --engine ray`: the seed list's shards as a Ray dataset, drawn by an actor
pool on a Ray cluster (a local one by default), then merged into one index.

The dataset holds shard indices 0..N-1 (``--shards``, default four per actor, so a slow or
restarted actor holds up a quarter of its share, not all of it). Each actor takes a GPU (or
``--actor-cpus`` CPU slots on a cluster without GPUs) and runs this same `gantool generate`
command on the shards it is handed (``--shard I/N``): the same backend, options, layouts and
files as a single process, each shard in its own folder (``gantool.sampling.shards``), so an
actor that dies has its shard handed to a new one, which skips the images already whole and
redraws the rest: nothing is lost or listed twice. ``--out`` and the model must be on a file
system every node of the cluster sees (the same path).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from gantool.errors import GantoolError

TAKEN = ("--engine", "--address", "--actors", "--shards", "--actor-cpus", "--workers", "--shard",
         "--progress", "--no-progress")
FLAGS = ("--progress", "--no-progress")
SHARDS_PER_ACTOR = 4


def ray_module():
    """``ray`` and ``ray.data`` (the ``ray`` extra), or a one-line install hint."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise GantoolError("--engine ray needs the ray extra: pip install 'gantool[ray]'") \
            from None
    return ray


class ShardActor:
    """A Ray actor: `gantool generate ARGS --shard I/N` for each shard index it is handed,
    in the driver's working directory (relative paths mean what they meant there)."""

    def __init__(self, args: list[str], cwd: str, shards: int, workers: int):
        self.args, self.shards, self.workers = args, shards, workers
        os.chdir(cwd)

    def __call__(self, batch: dict) -> dict:
        from gantool.cli.main import command

        done = []
        for index in batch["shard"]:
            args = [*self.args, "--shard", f"{int(index)}/{self.shards}", "--no-progress",
                    "--workers", str(self.workers)]
            # a user error raises GantoolError: the dataset fails with it, once, not retried
            command().main(args=["generate", *args], standalone_mode=False,
                           prog_name="gantool")
            done.append(int(index))
        return {"shard": done}


def run_on_ray(argv: list[str], out: Path, total: int, address: str | None,
               actors: int | None, shards: int | None, actor_cpus: float, progress: bool,
               workers: int | None, on_gpu: bool) -> str:
    """Draw every shard on the Ray cluster at ``address`` (None: start one on this machine)
    with one progress bar over all of them; returns a line saying where it ran."""
    from gantool.cli.devices import _Rows, _watch
    from gantool.sampling.shards import Shard

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # before the driver's core worker
    ray = ray_module()
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)  # our bar says the progress
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if on_gpu else 0
        cpus = float(resources.get("CPU", 1))
        slots = gpus or max(1, int(cpus // actor_cpus))
        actors = actors or slots
        shards = shards or actors * SHARDS_PER_ACTOR
        if actors < 1 or shards < 1:
            raise GantoolError("--actors and --shards must be at least 1")
        where = (f"{actors} actor(s) on {gpus} GPU(s)" if gpus else
                 f"{actors} actor(s) x {actor_cpus:g} CPU of {cpus:g}")
        args = actor_args(argv)
        per_actor = workers or max(1, int(actor_cpus))
        remote = {"num_gpus": 1} if gpus else {"num_cpus": actor_cpus}
        # shard indices straight from the driver: no read task needs a CPU slot the actors hold
        data = ray.data.from_items([{"shard": i} for i in range(shards)],
                                   override_num_blocks=shards)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        pool = ray.data.ActorPoolStrategy(size=actors)
        done = data.map_batches(ShardActor, batch_size=1, compute=pool,
                                fn_constructor_args=(args, os.getcwd(), shards, per_actor),
                                **remote)
        job = _Job(lambda: done.take_all())
        _watch([job], [_Rows(Shard(i, shards, "ray").folder(out)) for i in range(shards)],
               total, progress)
        job.result()
        return f"{shards} shard(s) on Ray: {where}"
    finally:
        if started:
            ray.shutdown()


def actor_args(argv: list[str]) -> list[str]:
    """The generate command's arguments (``argv`` less the command's name) without those each
    actor gets its own value of, or that only the driver takes."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in TAKEN:
            skip = "=" not in arg and name not in FLAGS
            continue
        out.append(arg)
    return out


class _Job:
    """The dataset's execution on a thread, with the ``poll()`` a process has (None while it
    runs), so the progress loop that watches processes watches it."""

    def __init__(self, run):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        self.thread.start()

    def _run(self, run) -> None:
        try:
            run()
        except BaseException as e:  # noqa: BLE001 - handed to the caller in result()
            self.error = e

    def poll(self):
        return None if self.thread.is_alive() else 0

    def result(self) -> None:
        while self.thread.is_alive():
            time.sleep(0.2)
        if self.error is not None:
            raise _user_error(self.error)


def _user_error(error: BaseException) -> BaseException:
    """A GantoolError raised in an actor (Ray wraps it) as itself: one line for the user."""
    cause = error
    while cause is not None:
        if isinstance(cause, GantoolError):
            return GantoolError(str(cause))
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = str(error).strip().splitlines()
    reason = next((line for line in reversed(text) if "GantoolError" in line), None)
    if reason is not None:
        return GantoolError(reason.split("GantoolError: ", 1)[-1])
    return error
