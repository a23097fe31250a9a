"""Pictures early and at every stop: the sample-grid cadence (steps, time, auto), the grid
before the first step and where training stops, cadence changes on --resume, the time budget's
line, the status line's timer, and the commands training ends with."""

import io
import re
import time

import pytest
from rich.console import Console

from gantool.config import sample_cadence
from gantool.errors import ConfigError, GantoolError
from gantool.progress import StepProgress, clock
from gantool.train.loop import run
from gantool.train.samples import GridClock

from conftest import gantool_cli, tiny_config


def _grids(run_dir) -> list[int]:
    return sorted(int(p.stem.removeprefix("step-")) for p in (run_dir / "samples").iterdir())


def _due_times(clock: GridClock, until: float) -> list[float]:
    """The times (from its start, up to ``until``) at which ``clock`` asks for a grid, polled
    every second."""
    times, now = [], clock.start
    while now - clock.start <= until:
        if clock.due(0, now):
            times.append(now - clock.start)
            clock.wrote(now)
        now += 1.0
    return times


def test_the_clock_reads_hours_then_days():
    assert [clock(s) for s in (-1, 59, 3725, 86399, 86400 + 3725, 20_635_942)] == [
        "0:00:00", "0:00:59", "1:02:05", "23:59:59", "1 day 1:02:05", "238 days 20:12:22"]


def test_the_cadence_reads_steps_times_and_auto():
    assert sample_cadence("auto") == ("auto", 0)
    assert sample_cadence("500") == ("steps", 500) and sample_cadence(500) == ("steps", 500)
    assert sample_cadence("2m") == ("time", 120) and sample_cadence("1:30") == ("time", 90)
    for bad in ("-1", "soon", "0s", "1.5", "٣"):
        with pytest.raises(ConfigError, match="sample_every must be a number of steps"):
            sample_cadence(bad)
    with pytest.raises(ConfigError, match="sample_every"):
        tiny_config(**{"train.sample_every": "often"})


def test_auto_grids_come_early_then_every_half_hour():
    minutes = [t / 60 for t in _due_times(GridClock(("auto", 0), 100, 1000.0), 185 * 60)]
    assert minutes == [2, 4, 8, 16, 32, 62, 92, 122, 152, 182]
    assert _due_times(GridClock(("time", 90), 100, 0.0), 400) == [90, 180, 270, 360]
    late = GridClock(("auto", 0), 100, 0.0)  # one long step past several times: one grid
    assert late.due(0, 1000) and (late.wrote(1000) or True) and not late.due(0, 1900)
    assert late.due(0, 1920)
    by_steps, each_epoch = GridClock(("steps", 5), 100, 0.0), GridClock(("steps", 0), 7, 0.0)
    assert [s for s in range(1, 16) if by_steps.due(s, 1e9)] == [5, 10, 15]
    assert [s for s in range(1, 16) if each_epoch.due(s, 0)] == [7, 14]


def test_grids_before_training_where_it_stops_and_on_a_cadence_changed_on_resume(tmp_path):
    """A grid before the first step and one at the last, whatever the cadence; --resume may
    change the cadence (here to a time: every step) and the grid size, and nothing else."""
    first = run(tiny_config(**{"train.steps": 5, "train.sample_every": "1000"}), out=tmp_path,
                progress=False)
    assert _grids(first.run_dir) == [0, 5]
    run(resume=first.run_dir, steps=8, progress=False,
        changes={"train.sample_every": "0.001s", "train.sample_grid": 4})
    assert _grids(first.run_dir) == [0, 5, 6, 7, 8]
    with pytest.raises(GantoolError, match="keeps its configuration but for train.steps"):
        run(resume=first.run_dir, steps=9, progress=False, changes={"train.lr_g": 1e-3})


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_a_time_budget_says_what_it_buys_and_stops_with_a_grid(tmp_path):
    out = io.StringIO()
    cfg = tiny_config(**{"train.steps": 100_000, "train.sample_every": "50000",
                         "train.log_every": 1})  # the line comes with the first metrics row:
    result = run(cfg, out=tmp_path, progress=False, max_time=8.0,  # after step 1, even loaded
                 console=Console(file=out, width=300))
    text = out.getvalue()
    assert result.out_of_time and _grids(result.run_dir) == [0, result.step]
    line = next(ln for ln in text.splitlines() if "buys about" in ln)
    fits = int(re.search(r"buys about ([\d,]+) of the 100,000 steps", line)[1].replace(",", ""))
    assert 1 <= fits < 100_000 and "a resume goes on from it" in line
    assert f"step {result.step} (where training stopped): sample grid" in text


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_the_status_line_keeps_coming_during_a_long_step():
    """Where stderr is a log file, a status line every ``every`` seconds even while one step
    takes longer (a timer, not the step loop), saying which step is running."""
    out = io.StringIO()
    with StepProgress(Console(file=out, width=200), "train", 10, every=1.0, unit="step") as bar:
        bar.advance(1)
        time.sleep(3.5)  # step 2 runs long
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("train 1/10")]
    running = [ln for ln in lines if "eta" in ln and "(step 2 running for 0:00:0" in ln]
    assert len(running) >= 2 and len(set(lines)) == len(lines), out.getvalue()


@pytest.mark.slow
def test_training_ends_with_the_commands_that_look_at_it(tmp_path):
    r = gantool_cli("train", "--data", "builtin:fashion-mnist", "--resolution", "28",
                    "--channels", "1", "--ngf", "8", "--ndf", "8", "--batch-size", "16",
                    "--steps", "3", "--no-progress", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    run_dir = next(tmp_path.iterdir())
    ckpt = run_dir / "checkpoints" / "last.pt"
    assert f"samples:    {run_dir}/samples/step-0000003.png (newest of 2)" in r.stdout
    for command in (f"gantool generate {ckpt} --seeds 0-63 --grid out/grid.png",
                    f"gantool explore {ckpt}", f"gantool report {run_dir}"):
        assert f"  {command}    # " in r.stdout, r.stdout
    r = gantool_cli("train", "--resume", run_dir, "--steps", "4", "--lr-g", "1e-3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "only --max-time, --steps, --sample-every" in r.stderr and "(got --lr-g)" in r.stderr
    r = gantool_cli("train", "--resume", run_dir, "--steps", "5", "--sample-every", "1",
                    "--set", "train.sample_grid=4", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert _grids(run_dir) == [0, 3, 4, 5]
