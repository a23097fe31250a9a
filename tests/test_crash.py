"""Crash safety: SIGKILL (also mid checkpoint write) and Ctrl-C never cost a readable checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gantool.train.checkpoint import step_checkpoints

from conftest import CTRL_C_ABLE

pytestmark = pytest.mark.slow  # the whole module: make test-fast skips it

STEPS = 40
# Wide enough that a checkpoint (G, D, G_ema, two Adams) takes a while to write.
TRAIN = ["--data", "builtin:fashion-mnist", "--resolution", "28", "--channels", "1", "--ngf", "96",
         "--ndf", "32", "--batch-size", "8", "--sample-every", "1000", "--checkpoint-every", "1",
         "--set", "train.keep=3", "--set", "train.log_every=1", "--no-progress"]


def _popen(*args):
    return subprocess.Popen([sys.executable, "-m", "gantool", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **CTRL_C_ABLE)


def _wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.001)
    return False


def _writing_into(pid: int, folder) -> bool:
    """Whether process ``pid`` holds a file open in ``folder`` that has no final name yet."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)) and (target.endswith((" (deleted)", ".tmp"))):
            return True
    return False


def _all_checkpoints_load(ckpt_dir):
    paths = step_checkpoints(ckpt_dir) + [ckpt_dir / "last.pt"]
    steps = [torch.load(p, weights_only=True)["step"] for p in paths if p.exists()]
    assert steps, "at least one checkpoint survives"
    return max(steps)


def test_sigkill_anywhere_then_resume(tmp_path):
    out = tmp_path / "runs"
    ckpts = out / "00001-custom" / "checkpoints"
    p = _popen(*TRAIN, "--steps", STEPS, "--out", out)
    assert _wait_for(lambda: (ckpts / "step-0000003.pt").exists()), p.communicate()
    # Kill while a checkpoint is being written: the trainer holds it open, unnamed (O_TMPFILE,
    # "#inode (deleted)" in /proc) or as a temp file.
    caught = _wait_for(lambda: _writing_into(p.pid, ckpts), timeout=30)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert caught, "the test never saw a checkpoint write in progress"
    killed_at = _all_checkpoints_load(ckpts)

    # Resume, then kill again at an arbitrary moment.
    p = _popen("--resume", out / "00001-custom", "--no-progress")
    assert _wait_for(lambda: (ckpts / f"step-{killed_at + 3:07d}.pt").exists()), p.communicate()
    p.send_signal(signal.SIGKILL)
    p.wait()
    _all_checkpoints_load(ckpts)

    p = _popen("--resume", out / "00001-custom", "--no-progress")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "resuming" in err
    assert _all_checkpoints_load(ckpts) == STEPS
    assert torch.load(ckpts / "last.pt", weights_only=True)["step"] == STEPS
    assert not list(ckpts.glob(".*.tmp")), "leftover temp files are cleaned on resume"
    rows = [json.loads(x)["step"] for x in (ckpts.parent / "metrics.jsonl").read_text().split("\n")
            if x]
    assert rows == list(range(1, STEPS + 1)), "metrics hold each step once, in order"


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    out = tmp_path / "runs"
    ckpts = out / "00001-custom" / "checkpoints"
    p = _popen(*TRAIN, "--checkpoint-every", "1000", "--steps", 100_000, "--out", out)
    assert _wait_for(lambda: (ckpts.parent / "metrics.jsonl").exists()), p.communicate()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "continue with: gantool train --resume" in err and "Traceback" not in err
    state = torch.load(ckpts / "last.pt", weights_only=True)
    assert 0 < state["step"] < 100_000
    assert os.path.exists(ckpts / f"step-{state['step']:07d}.pt")


def test_a_run_folder_trains_in_one_process_at_a_time(tmp_path):
    """A resume started while the run still trains is refused; after a kill -9 it resumes
    (the lock dies with its process)."""
    first = _popen(*TRAIN, "--steps", "100000", "--out", tmp_path)
    try:
        assert _wait_for(lambda: list(tmp_path.glob("*/checkpoints/step-*.pt")))
        run_dir = next(tmp_path.iterdir())
        second = subprocess.run([sys.executable, "-m", "gantool", "train", "--resume", run_dir,
                                 "--steps", "100001", "--no-progress"],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        assert f"another gantool process (pid {first.pid}) is training in {run_dir}" in \
            second.stderr.strip().splitlines()[-1]
        assert first.poll() is None  # the first one trains on
    finally:
        first.kill()
        first.wait()
    step = _all_checkpoints_load(run_dir / "checkpoints")
    again = subprocess.run([sys.executable, "-m", "gantool", "train", "--resume", run_dir,
                            "--steps", str(step + 2), "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr


@pytest.fixture
def full_disk(tmp_path):
    """A real 2 MiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here ({r.stderr.strip() or 'mount failed'})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", disk], check=False)


def test_a_full_disk_is_one_line_and_leaves_whole_files(full_disk, tiny_ckpt):
    from PIL import Image

    from conftest import gantool_cli

    # training: the first checkpoint (about 6 MiB with ngf 96) does not fit
    r = gantool_cli("train", *TRAIN, "--steps", "4", "--out", full_disk / "runs")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write") and "No space left on device" in last
    assert not list(full_disk.glob("runs/*/checkpoints/*.pt"))
    # rendering: stops at the full disk; every file listed in the manifest is whole
    out = full_disk / "render"
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-99999", "--out", out,
                    "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: cannot write {out}: No space left " \
                                                "on device"
    listed = [json.loads(line)["file"] for line in (out / "manifest.jsonl").open()]
    assert listed and len(listed) == len(set(listed))
    for name in listed:
        Image.open(out / name).load()  # whole
