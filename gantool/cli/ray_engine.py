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
        from gantool.cli.main import command, user_message

        done, errors = [], []
        for index in batch["shard"]:
            args = [*self.args, "--shard", f"{int(index)}/{self.shards}", "--no-progress",
                    "--workers", str(self.workers)]
            try:
                command().main(args=["generate", *args], standalone_mode=False,
                               prog_name="gantool")
            except GantoolError as e:  # the user's to fix: said once by the driver, not retried
                errors.append(user_message(e, "generate"))
            else:
                errors.append("")
            done.append(int(index))
        return {"shard": done, "error": errors}


def run_on_ray(argv: list[str], out: Path, total: int, address: str | None,
               actors: int | None, shards: int | None, actor_cpus: float, progress: bool,
               workers: int | None, on_gpu: bool) -> str:
    """Draw every shard on the Ray cluster at ``address`` (None: start one on this machine)
    with one progress bar over all of them; returns a line saying where it ran."""
    from gantool.cli.devices import ShardRows, watch
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
        watch([job], [ShardRows(Shard(i, shards, "ray").folder(out)) for i in range(shards)],
              total, progress)
        failed = sorted((row["shard"], row["error"]) for row in job.result() if row["error"])
        if failed:
            raise GantoolError(f"shard {failed[0][0]}/{shards}: {failed[0][1]}")
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
        self.rows: list[dict] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        self.thread.start()

    def _run(self, run) -> None:
        try:
            self.rows = run()
        except BaseException as e:  # noqa: BLE001 - handed to the caller in result()
            self.error = e

    def poll(self):
        return None if self.thread.is_alive() else 0

    def result(self) -> list[dict]:
        """The dataset's rows once it has run; its exception if it failed."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.rows
