"""generate --engine ray on a real local Ray cluster (these 2 cores): the shards drawn by an
actor pool are the single-process render's bytes, in every layout; an actor killed mid-render
is replaced and no image is lost or listed twice; errors are one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import gantool_cli

pytestmark = pytest.mark.slow  # a Ray cluster starts in each test: make test-fast skips them
pytest.importorskip("ray.data", reason="the ray extra is not installed")


def _images(folder: Path) -> dict[int, bytes]:
    """Each seed's image bytes through the folder's manifest (files, or tar members)."""
    out = {}
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["seed"] not in out, f"seed {row['seed']} listed twice"
        if "member" in row:
            with tarfile.open(folder / row["file"]) as tar:
                out[row["seed"]] = tar.extractfile(row["member"]).read()
        else:
            out[row["seed"]] = (folder / row["file"]).read_bytes()
    return out


@pytest.mark.parametrize("layout", ["flat", "webdataset"])
def test_ray_actors_draw_the_single_process_bytes(tiny_ckpt, tmp_path, layout):
    args = ["--seeds", "0-120,500-510", "--layout", layout, "--tar-images", "16",
            "--no-progress"]
    single = gantool_cli("generate", tiny_ckpt, *args, "--out", tmp_path / "single")
    assert single.returncode == 0, single.stderr
    r = gantool_cli("generate", tiny_ckpt, *args, "--out", tmp_path / "ray", "--engine", "ray",
                    "--actors", "2", "--shards", "5", "--actor-cpus", "0.5")
    assert r.returncode == 0, r.stderr
    assert "132 image(s) from 5 shard(s) on Ray: 2 actor(s) x 0.5 CPU" in r.stdout
    assert sorted(p.name for p in (tmp_path / "ray").glob("shard-*")) == [
        f"shard-{i:05d}-of-00005" for i in range(5)]
    assert _images(tmp_path / "ray") == _images(tmp_path / "single")


def test_a_killed_actor_is_replaced_and_nothing_is_lost_or_listed_twice(tiny_ckpt, tmp_path):
    out = tmp_path / "ray"
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "generate", str(tiny_ckpt),
                             "--seeds", "0-11999", "--out", str(out), "--engine", "ray",
                             "--actors", "2", "--shards", "6", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        rows = sum(len(p.read_bytes().splitlines()) for p in out.glob("shard-*/manifest.jsonl"))
        actors = _actor_pids()
        if rows > 200 and actors:
            victim = actors[0]
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=300)
    assert victim is not None, "no actor was seen drawing"
    assert proc.returncode == 0, stderr
    assert "12,000 image(s) from 6 shard(s)" in stdout
    rows = (out / "manifest.jsonl").read_text().splitlines()
    seeds = [json.loads(line)["seed"] for line in rows]
    assert seeds == list(range(12000)), "every seed once, in order"
    single = gantool_cli("generate", tiny_ckpt, "--seeds", "0-11999", "--out",
                         tmp_path / "single", "--no-progress")
    assert single.returncode == 0
    assert _images(out) == _images(tmp_path / "single")


def _actor_pids() -> list[int]:
    """The processes of the actors that draw (Ray titles them after the actor class)."""
    ps = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in ps.splitlines()[1:]]
    actors = {int(pid) for pid, _, args in rows if args.startswith("ray::MapWorker")}
    # an actor's own encoder processes carry its title too: only those whose parent is not one
    return sorted(pid for pid, ppid, args in ((int(a), int(b), c) for a, b, c in rows)
                  if pid in actors and ppid not in actors)


@pytest.mark.parametrize("args, words", [
    (["--truncation", "0.001"], "below the normal prior's minimum"),  # raised in an actor
    (["--grid", "g.png"], "leave out --grid"),
    (["--class", "3"], "not conditional"),
])
def test_errors_are_one_line(tiny_ckpt, tmp_path, args, words):
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", tmp_path / "o",
                    "--engine", "ray", "--actors", "1", "--no-progress", *args, cwd=tmp_path)
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [
        r.stderr.strip().splitlines()[-1]]


def test_without_the_extra_an_install_hint(tiny_ckpt, tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None\n")
    r = gantool_cli("generate", tiny_ckpt, "--out", tmp_path / "o", "--engine", "ray",
                    env_extra={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2 and "pip install 'gantool[ray]'" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def _no_ray_address_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


# an address where nothing answers (localhost:1: Ray's own 45 s connect timeout) is the
# reliability script's case (benchmarks/reliability.py, group engines): CI time
@pytest.mark.parametrize("address, within, words", [
    ("auto", 30, "--address auto: no Ray cluster runs on this machine"),
])
def test_an_address_without_a_cluster_is_one_line_in_bounded_time(tiny_ckpt, tmp_path, address,
                                                                   within, words):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "gantool", "generate", str(tiny_ckpt), "--seeds",
                        "0-3", "--out", str(tmp_path / "o"), "--engine", "ray", "--address",
                        address, "--no-progress"], capture_output=True, text=True,
                       timeout=within + 60, env=_no_ray_address_env())
    assert time.monotonic() - t0 < within, "Ray's connection retries are not bounded"
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {words}"), \
        r.stderr
    assert not (tmp_path / "o").exists()


def test_actors_larger_than_the_machine_are_one_line(tiny_ckpt, tmp_path):
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", tmp_path / "o",
                    "--engine", "ray", "--actor-cpus", "64", "--no-progress", timeout=120)
    assert r.returncode == 2, r.stderr  # not a wait for a node that never comes
    assert r.stderr.strip().splitlines()[-1].startswith(
        "error: --actor-cpus 64: this machine's Ray cluster has"), r.stderr


def _shm() -> set[str]:
    return {p for p in os.listdir("/dev/shm") if p.startswith("gantool-")}


def _renders_of(out: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if str(out) in line and "gantool" in line]


@pytest.mark.parametrize("whole_job", [False, True], ids=["driver", "whole-job"])
def test_sigterm_stops_a_ray_render_as_ctrl_c_does(tiny_ckpt, tmp_path, whole_job):
    """Exit 143 and one line (no Ray stack trace), every whole file listed in its shard's
    manifest, no shared memory and no process left: to the driver alone, and to the whole job
    (the cluster this machine started goes down with it)."""
    out, shm = tmp_path / "ray", _shm()
    proc = subprocess.Popen([sys.executable, "-m", "gantool", "generate", str(tiny_ckpt),
                             "--seeds", "0-199999", "--out", str(out), "--engine", "ray",
                             "--actors", "2", "--shards", "4", "--format", "jpg",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and sum(
            len(p.read_bytes().splitlines()) for p in out.glob("shard-*/manifest.jsonl")) < 100:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    (os.killpg if whole_job else os.kill)(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    lines = err.strip().splitlines()
    assert proc.returncode == 143, err
    assert lines[-1].startswith("terminated (SIGTERM); the files written are whole"), err
    assert "Traceback" not in err and "SIGTERM received" not in err, err
    for folder in out.glob("shard-*"):
        rows = [json.loads(x)["file"] for x in (folder / "manifest.jsonl").read_text()
                .splitlines()] if (folder / "manifest.jsonl").exists() else []
        files = sorted(p.name for p in folder.glob("*.jpg"))
        assert sorted(rows) == files, f"{folder.name}: listed and on disk differ"
        assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]
    deadline = time.monotonic() + 15
    while (_renders_of(out) or _shm() - shm) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _renders_of(out), "a render outlived its driver"
    assert not _shm() - shm, "shared memory left behind"


def test_a_ray_render_in_a_sharded_job_is_refused(tiny_ckpt, tmp_path):
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", tmp_path / "o",
                    "--engine", "ray", "--no-progress",
                    env_extra={"JOB_COMPLETION_INDEX": "2", "GANTOOL_SHARDS": "8"})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --engine ray splits the whole seed list, but this process is shard 2/8 of a job "
        "(JOB_COMPLETION_INDEX/GANTOOL_SHARDS): each of the job's processes would draw every "
        "seed; leave out --engine ray (each then draws its shard)"], r.stderr
    assert not (tmp_path / "o").exists()
