"""Crash safety: SIGKILL (also mid checkpoint write) and Ctrl-C never cost a readable checkpoint."""

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from gantool.train.run_files import step_checkpoints

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


@functools.cache
def _reliability():
    """benchmarks/reliability.py, loaded from its file (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reliability.py"
    spec = importlib.util.spec_from_file_location("reliability", path)
    module = sys.modules["reliability"] = importlib.util.module_from_spec(spec)  # dataclasses
    spec.loader.exec_module(module)
    return module


def _writing_into(pid: int, folder) -> bool:
    """Whether process ``pid`` holds a file open in ``folder`` that has no final name yet."""
    return _reliability().writing_into(pid, folder)


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


# ---- a signal while a stop's checkpoint is written -------------------------------------------
# A Ctrl-C or SIGTERM that lands while training writes its checkpoint at a stop (--max-time,
# the last step, a Ctrl-C's own save): the save finishes, says so, and the run exits 130/143
# with last.pt at that step; a second signal aborts the save and leaves the earlier files
# intact. The moment is found from the file system, not a knob: the trainer holds the file it
# writes open in checkpoints/; the test freezes it there (SIGSTOP), sends the signal and lets
# it go on (SIGCONT), so the signal is handled mid-save whatever the machine's load.

# A checkpoint of about 100 MB (G, G_ema, D, two Adams): a save takes a while, a step does not.
SLOW_SAVE = ["--data", "builtin:fashion-mnist", "--resolution", "28", "--channels", "1",
             "--ngf", "256", "--ndf", "16", "--batch-size", "2", "--sample-every", "100000",
             "--checkpoint-every", "100000", "--set", "train.log_every=1", "--no-progress"]
FINISHING = "finishing the checkpoint at step {step}; press Ctrl-C again to abort it"


class Training:
    """``gantool train ARGS`` in a process of its own; its stderr lines collected as they come."""

    def __init__(self, out, *args):
        self.ckpts = out / "00001-custom" / "checkpoints"
        self.proc = subprocess.Popen([sys.executable, "-m", "gantool", "train", *map(str, args),
                                      "--out", str(out)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, **CTRL_C_ABLE)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def signal_mid_save(self, *signals, timeout=120.0):
        """Wait for a checkpoint write in progress, freeze the process there, send ``signals``
        and let it go on: they are handled before the save can end."""
        assert _wait_for(lambda: _writing_into(self.proc.pid, self.ckpts)
                         or self.proc.poll() is not None, timeout), "no checkpoint write"
        self.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(0.05)  # stopped for sure (a signal's delivery is asynchronous)
            assert _writing_into(self.proc.pid, self.ckpts), "the save ended before the stop"
            for sig in signals:
                self.proc.send_signal(sig)
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def said(self, text, timeout=60.0) -> bool:
        """Wait until the process said ``text`` (a line) or ended."""
        _wait_for(lambda: text in self.lines or self.proc.poll() is not None, timeout)
        return text in self.lines

    def finish(self, timeout=300):
        out = self.proc.stdout.read()  # (stderr is the reader's)
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return self.proc.returncode, out, "\n".join(self.lines)


def _trained_to(ckpts) -> int:
    """The last step with a metrics row; 0 with no row yet."""
    metrics = ckpts.parent / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.exists() else []
    return max((r["step"] for r in rows if "event" not in r), default=0)


def _steps_on_disk(ckpts) -> dict[str, int]:
    """Every checkpoint file's step (each must load), and no temp file beside them."""
    assert not [n for n in os.listdir(ckpts) if n.endswith(".tmp")], os.listdir(ckpts)
    return {p.name: torch.load(p, weights_only=True)["step"] for p in ckpts.glob("*.pt")}


@pytest.mark.parametrize("sig, code, why", [(signal.SIGINT, 130, "interrupted"),
                                            (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_during_the_save_at_max_time_finishes_it(tmp_path, sig, code, why):
    run = Training(tmp_path, *SLOW_SAVE, "--steps", "100000", "--max-time", "10s")
    run.signal_mid_save(sig)
    rc, _, err = run.finish()
    step = _trained_to(run.ckpts)
    assert rc == code, err
    again = "press Ctrl-C again" if sig == signal.SIGINT else "send SIGTERM again"
    assert err.count(f"finishing the checkpoint at step {step}; {again} to abort it") == 1, err
    assert f"{why} at step {step}; checkpoint:" in err and "Traceback" not in err, err
    assert _steps_on_disk(run.ckpts) == {"last.pt": step, f"step-{step:07d}.pt": step}
    # step 0 where start-up alone outlasted the 10 s (a loaded machine): no stop's grid then
    stops = [f"step-{step:07d}.png"] if step else []
    grids = sorted(p.name for p in (run.ckpts.parent / "samples").iterdir())
    assert grids == ["step-0000000.png", *stops], grids  # first, and the stop's
    assert bool(step) == (f"step {step} (where training stopped): sample grid" in err), err


def test_a_ctrl_c_during_the_last_steps_save_finishes_it_and_exits_130(tmp_path):
    run = Training(tmp_path, *SLOW_SAVE, "--steps", "3")
    run.signal_mid_save(signal.SIGINT)
    rc, out, err = run.finish()
    assert rc == 130, err
    assert err.count(FINISHING.format(step=3)) == 1 and "Traceback" not in err, err
    assert "trained 3 steps" in out
    assert _steps_on_disk(run.ckpts) == {"last.pt": 3, "step-0000003.pt": 3}


def test_a_ctrl_c_during_a_ctrl_cs_own_save_finishes_it(tmp_path):
    run = Training(tmp_path, *SLOW_SAVE, "--steps", "100000")
    assert _wait_for(lambda: (run.ckpts.parent / "metrics.jsonl").exists())
    run.proc.send_signal(signal.SIGINT)  # stop at the next step, with a checkpoint ...
    run.signal_mid_save(signal.SIGINT)  # ... and a second Ctrl-C while it is written
    rc, _, err = run.finish()
    step = _trained_to(run.ckpts)
    assert rc == 130, err
    assert err.count(FINISHING.format(step=step)) == 1 and "Traceback" not in err, err
    assert f"interrupted at step {step}; checkpoint:" in err
    assert _steps_on_disk(run.ckpts) == {"last.pt": step, f"step-{step:07d}.pt": step}


def test_a_second_signal_aborts_the_save_and_keeps_the_checkpoint_before_it(tmp_path):
    run = Training(tmp_path, *SLOW_SAVE, "--steps", "6", "--checkpoint-every", "3",
                   "--set", "train.keep=2")
    assert _wait_for(lambda: (run.ckpts / "last.pt").exists() or run.proc.poll() is not None)
    run.signal_mid_save(signal.SIGINT)  # the save at step 6
    assert run.said(FINISHING.format(step=6)), run.lines
    run.signal_mid_save(signal.SIGINT)  # the same save, still being written
    rc, _, err = run.finish()
    assert rc == 130, err
    assert "aborted the checkpoint at step 6" in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert _steps_on_disk(run.ckpts) == {"last.pt": 3, "step-0000003.pt": 3}  # no half file
    # the lock went with the process; the run goes on from step 3
    again = subprocess.run([sys.executable, "-m", "gantool", "train", "--resume",
                            run.ckpts.parent, "--steps", "4", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr
    assert torch.load(run.ckpts / "last.pt", weights_only=True)["step"] == 4
