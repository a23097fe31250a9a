"""Shared fixtures: tiny real training runs on the bundled Fashion-MNIST sample."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# This process forks children (preexec_fn) while gRPC channels of earlier Triton tests are busy:
# with grpcio's fork support on, a few percent of them abort before exec (grpc/grpc#43055), as
# gantool's own gRPC client avoids (backends/triton_backend.py).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# The datasets beside the repository (a user's clone has none: the tests that need them skip);
# GANTOOL_TEST_SHARED points elsewhere (test_code_shape runs those tests with it absent).
SHARED = Path(os.environ.get("GANTOOL_TEST_SHARED")
              or Path(__file__).resolve().parents[2] / "shared")
FASHION_MNIST = SHARED / "data" / "fashion-mnist"
TWEMOJI_TAR = SHARED / "data" / "twemoji-64" / "twemoji-64.tar"

# A network small enough for a few CPU steps a second, big enough to learn something.
TINY = {
    "name": "tiny", "data.path": "builtin:fashion-mnist", "model.resolution": 28,
    "model.channels": 1, "model.ngf": 8, "model.ndf": 8, "train.batch_size": 16,
    "train.log_every": 2, "train.sample_grid": 16,
}


def assert_same_networks(a: dict, b: dict) -> None:
    """Two checkpoints' G, D and G_ema tensors are bit-identical (an exact resume)."""
    import torch

    for net in ("G", "D", "G_ema"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs"


def tiny_config(**overrides):
    from gantool.config import RunConfig, apply_overrides

    return apply_overrides(RunConfig(), {**TINY, **overrides})


def gantool_cli(*args: str, timeout: float = 300, env_extra: dict | None = None,
                **kwargs) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh interpreter."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gantool", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs)


def cli_in_process(*args) -> int:
    """``gantool ARGS`` in this interpreter (``gantool.cli.main.main``): its exit code."""
    from gantool.cli.main import main

    try:
        main([*map(str, args)])
    except SystemExit as e:
        return e.code
    return 0


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Popen arguments for a child the test will Ctrl-C: a shell that starts jobs in the background
# (``make test &``, nohup) passes SIGINT on as ignored, and Python then keeps ignoring it.
CTRL_C_ABLE = {"preexec_fn": _default_sigint}


def torchrun(nproc: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``gantool ARGS`` in ``nproc`` processes started by torchrun on this node."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", "-m", "gantool", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished 12-step run: (run_dir, config)."""
    from gantool.train.loop import run

    cfg = tiny_config(**{"train.steps": 12, "train.checkpoint_every": 4,
                         "train.sample_every": 6, "train.keep": 2})
    result = run(cfg, out=tmp_path_factory.mktemp("runs"), progress=False)
    return result.run_dir, cfg


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run):
    return tiny_run[0] / "checkpoints" / "last.pt"


@pytest.fixture
def small_disk(tmp_path):
    """A function that mounts a real tmpfs of the given size ("2m", "128k") and returns its
    folder (unmounted after the test); the test is skipped where mounting is not allowed."""
    mounted = []

    def mount(size: str) -> Path:
        disk = tmp_path / f"disk-{size}"
        disk.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a {size} tmpfs here: {r.stderr.strip()}")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", str(disk)], capture_output=True)


@contextlib.contextmanager
def explore_server(*args: str, timeout: float = 120):
    """``gantool explore ARGS --port 0`` as a real server process: yields its address (from
    the line it prints); Ctrl-C at the end, which must stop it cleanly."""
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "explore", *map(str, args),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            **CTRL_C_ABLE)
    try:
        deadline = time.monotonic() + timeout
        line = ""
        while "http://" not in line:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"explore did not start: {line}{proc.stderr.read()}")
        yield line.split("gantool explore: ")[1].split()[0]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("explore did not stop on Ctrl-C") from None
        rest = proc.stderr.read()
    assert code in (0, 130) and "Traceback" not in rest, rest
