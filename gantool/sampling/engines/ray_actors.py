"""`gantool generate --engine ray`: the seed list's shards as a Ray dataset, drawn by an actor
pool on a Ray cluster (a local one by default), then merged into one index.

The dataset holds shard indices 0..N-1 (``--shards``, default four per actor, so a slow or
restarted actor holds up a quarter of its share, not all of it). Each actor takes a GPU (or
``--actor-cpus`` CPU slots on a cluster without GPUs) and runs this same `gantool generate`
command on the shards it is handed (``--shard I/N``), each in a process of its own: the same
backend, options, layouts and files as a single process, each shard in its own folder
(``gantool.sampling.shards``), so an actor that dies has its shard handed to a new one, which
skips the images already whole and redraws the rest: nothing is lost or listed twice.
``--out`` and the model must be on a file system every node of the cluster sees (the same
path). Ctrl-C or SIGTERM to the driver (or to its whole job) stops every shard's render as a
render stops (exit 130 or 143, whole files listed, shared memory freed) before the cluster
is let go.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from gantool.errors import GantoolError, OptionError, first_line, literal
from gantool.sampling.engines import ShardCommand

SHARDS_PER_ACTOR = 4
# Ray's settings, read when ray is imported: a driver that joins a cluster (--address) gives
# up on an address where none answers in about 45 s (2 tries of at most 5 + 5 + 10 s), not
# Ray's 20 tries of 40 s; no call after shutdown starts a new cluster by itself
CONNECT = {"RAY_gcs_server_port_wait_time_s": "2", "RAY_py_gcs_connect_timeout_s": "10"}
QUIET = {"RAY_BACKEND_LOG_LEVEL": "error", "RAY_ENABLE_AUTO_CONNECT": "0"}
# a Ray worker that exits kills its child processes with SIGKILL by default: a shard's render,
# stopped with its actor (a SIGTERM to the whole job), would leave whole files unlisted; with
# this off the render gets the SIGTERM its parent's death sends it (die_with_parent) and lists
# them, while the driver waits for its folder's lock
KEEP_RENDERS = {"RAY_kill_child_processes_on_worker_exit": "0"}
STOPPED = "stopped"  # an actor's answer for a shard it stopped (or did not start): the driver
STOP_WAIT = 30  # seconds a stopped driver waits for its actors to list their whole files


def ray_module(address: str | None = None):
    """``ray`` and ``ray.data`` (the ``ray`` extra), or a one-line install hint; the settings
    that must precede its import first (``address``: joining a running cluster)."""
    for name, value in {**QUIET, **KEEP_RENDERS,
                        **(CONNECT if address is not None else {})}.items():
        os.environ.setdefault(name, value)
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise OptionError(None, "{engine} ray needs the ray extra: pip install 'gantool[ray]'") \
            from None
    return ray


class StopFlag:
    """A Ray actor holding one bit: the driver stopped (Ctrl-C, SIGTERM)."""

    def __init__(self):
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def get(self) -> bool:
        return self.stopped


class ShardActor:
    """A Ray actor: `gantool generate ARGS --shard I/N` for each shard index it is handed, in
    its own process (as ``--devices`` runs them) in the driver's working directory (relative
    paths mean what they meant there). Once the driver's ``stop`` flag is set, the render
    under way stops as a render does on SIGTERM (whole files, listed, shared memory freed) and
    no other starts; an actor that dies takes its render with it the same way."""

    def __init__(self, command: ShardCommand, cwd: str, shards: int, workers: int, stop=None):
        self.command, self.cwd, self.shards, self.workers = command, cwd, shards, workers
        self.stop, self.stopped, self.node = stop, False, os.getppid()  # its node's raylet

    def __call__(self, batch: dict) -> dict:
        done, errors = [], []
        for index in batch["shard"]:
            errors.append(self._draw(int(index)))
            done.append(int(index))
        return {"shard": done, "error": errors}

    def _draw(self, index: int) -> str:
        """Shard ``index``: '' once drawn, the user's error (said once by the driver, not
        retried), or STOPPED; any other failure raises, for Ray to retry the shard."""
        from gantool.system import die_with_parent

        if self._stopped():
            return STOPPED
        args = self.command(index, self.shards, None, self.workers)
        with tempfile.TemporaryFile() as said:
            proc = subprocess.Popen([sys.executable, "-m", "gantool", *args],
                                    cwd=self.cwd, stdout=said, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    preexec_fn=lambda: die_with_parent(signal.SIGTERM))
            try:
                while _running(proc):
                    if self._stopped():
                        proc.send_signal(signal.SIGTERM)
                        proc.wait()
                        return STOPPED
            except BaseException:  # Ray stops this actor (SIGTERM): the render stops first
                proc.send_signal(signal.SIGTERM)
                _running(proc, STOP_WAIT)
                raise
            said.seek(0)
            lines = said.read().decode(errors="replace").splitlines()
        last = next((line for line in reversed(lines) if line.strip()), "no output")
        if proc.returncode == 2:
            return last.removeprefix("error: ")
        if proc.returncode:
            raise RuntimeError(f"gantool generate, shard {index}/{self.shards}, exited with "
                               f"code {proc.returncode}: {last}")
        return ""

    def _stopped(self) -> bool:
        """Whether the driver stopped, or the cluster is gone (its raylet here, or the flag:
        a SIGTERM to a job also stops the cluster it started)."""
        import ray

        if not self.stopped and os.getppid() != self.node:
            self.stopped = True
        elif not self.stopped and self.stop is not None:
            try:
                self.stopped = ray.get(self.stop.get.remote(), timeout=5)
            except Exception:  # noqa: BLE001 - the driver and its flag are gone: stop too
                self.stopped = True
        return self.stopped


def _running(proc: subprocess.Popen, seconds: float = 0.5) -> bool:
    """Wait up to ``seconds`` for ``proc``; whether it still runs."""
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def run_on_ray(command: ShardCommand, out: Path, total: int, address: str | None,
               actors: int | None, shards: int | None, actor_cpus: float, progress: bool,
               workers: int | None, on_gpu: bool) -> str:
    """Draw every shard on the Ray cluster at ``address`` (None: start one on this machine)
    with one progress bar over all of them; returns a line saying where it ran. Ctrl-C or
    SIGTERM stops every actor's render as a render stops before the cluster is let go."""
    from gantool.sampling.engines.processes import ShardRows, watch
    from gantool.sampling.shards import Shard

    ray = ray_module(address)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)  # our bar says the progress
    started = not ray.is_initialized()
    if started:
        _init(ray, address)
    try:
        actors, shards, per_actor, remote, where = _plan(ray, actors, shards, actor_cpus,
                                                         workers, on_gpu, started)
        # shard indices straight from the driver: no read task needs a CPU slot the actors hold
        data = ray.data.from_items([{"shard": i} for i in range(shards)],
                                   override_num_blocks=shards)
        ray.data.DataContext.get_current().enable_progress_bars = False
        stop = ray.remote(num_cpus=0)(StopFlag).remote()
        done = data.map_batches(ShardActor, batch_size=1,
                                compute=ray.data.ActorPoolStrategy(size=actors),
                                fn_constructor_args=(command, os.getcwd(), shards, per_actor, stop),
                                **remote)
        job = _Job(lambda: done.take_all())
        folders = [Shard(i, shards, "ray").folder(out) for i in range(shards)]
        try:
            watch([job], [ShardRows(folder) for folder in folders], total, progress)
        except BaseException:  # Ctrl-C, SIGTERM: the actors' renders stop, their files listed
            for name in ("ray", "ray.data"):  # Ray complains of a cluster stopped under it
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
            with _stderr_off():
                _stop_renders(stop, job, folders)
                if started:
                    ray.shutdown()
            raise
        failed = sorted((row["shard"], row["error"]) for row in job.result() if row["error"])
        if failed:
            raise GantoolError(f"shard {failed[0][0]}/{shards}: {failed[0][1]}")
        return f"{shards} shard(s) on Ray: {where}"
    finally:
        if started:
            ray.shutdown()


def _stop_renders(stop, job: _Job, folders: list[Path]) -> None:
    """Set the stop flag, then wait (STOP_WAIT at most) until no render holds a shard folder
    (its files all listed) and the actors have answered (a few seconds at most for those: a
    cluster that went down with the signal, a SIGTERM to the whole job, never answers)."""
    try:
        stop.set.remote()
    except Exception:  # noqa: BLE001 - the cluster is gone: its actors stop their renders
        pass
    now = time.monotonic()
    deadline, answers = now + STOP_WAIT, now + 3
    locks = [folder / ".lock" for folder in folders]
    while time.monotonic() < deadline and (
            any(map(_held, locks)) or job.thread.is_alive() and time.monotonic() < answers):
        time.sleep(0.2)


def _held(lock: Path) -> bool:
    """Whether a process holds ``lock`` (``fileio.folder_lock``: a render is in its folder)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _plan(ray, actors: int | None, shards: int | None, actor_cpus: float,
          workers: int | None, on_gpu: bool, local: bool):
    """(actors, shards, encoders per actor, an actor's resources, a line saying where) on the
    cluster; a one-line error for actors no node of a cluster started here can hold (Ray would
    wait for one forever)."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if on_gpu else 0
    cpus = float(resources.get("CPU", 1))
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")),
                  default=0)
    if local and not gpus and actor_cpus > largest:
        raise OptionError(None, f"{{actor_cpus}} {actor_cpus:g}: this machine's Ray cluster has "
                           f"{largest:g} CPU(s); an actor asking for more would never start")
    slots = gpus or max(1, int(cpus // actor_cpus))
    actors = actors or slots
    shards = shards or actors * SHARDS_PER_ACTOR
    where = (f"{actors} actor(s) on {gpus} GPU(s)" if gpus else
             f"{actors} actor(s) x {actor_cpus:g} CPU of {cpus:g}")
    remote = {"num_gpus": 1} if gpus else {"num_cpus": actor_cpus}
    return actors, shards, workers or max(1, int(actor_cpus)), remote, where


def _init(ray, address: str | None) -> None:
    """ray.init: a new cluster on this machine (``address`` None) or the running one at
    ``address`` (none there: one line, in the time CONNECT allows, Ray's retry lines off the
    terminal). The signal handlers are put back as they were: ray.init sets SIGTERM to exit
    with code 15, and its core a handler that prints a stack trace; a stop stays gantool's."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    terminated = False
    try:
        with _stderr_off() if address is not None else nullcontext():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
    except SystemExit as e:  # Ray's SIGTERM handler, while it connected
        if e.code != signal.SIGTERM:
            raise
        terminated = True
    except Exception as e:  # noqa: BLE001 - a cluster that is not there, however Ray says so
        if address is None:
            raise
        raise OptionError(None, _unreachable(address, e)) from None
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if terminated:
        signal.raise_signal(signal.SIGTERM)  # as gantool stops on it (exit 143)


def _unreachable(address: str, e: Exception) -> str:
    if address == "auto":
        return ("{address} auto: no Ray cluster runs on this machine (nor at RAY_ADDRESS); "
                "start one (ray start --head), or leave out {address} to start one here")
    return (f"{{address}} {literal(address)}: no Ray cluster answers there "
            f"({literal(first_line(e, 100))}); "
            "check the address (ray status on the head node), or leave out {address} to "
            "start a cluster on this machine")


@contextmanager
def _stderr_off():
    """The process's stderr (file descriptor 2, where Ray's core writes) to /dev/null."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


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
