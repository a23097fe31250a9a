"""Data-parallel training under torchrun: a real 2-process gloo run on CPU, then resumed by
one process."""

from __future__ import annotations

import json

import pytest
import torch

from gantool.config import run_config
from gantool.models import build_discriminator, build_generator
from gantool.train.distributed import fingerprint

from conftest import gantool_cli, torchrun

pytestmark = pytest.mark.slow  # the whole module: make test-fast skips it

TINY_FLAGS = ["--data", "builtin:fashion-mnist", "--resolution", "28", "--channels", "1",
              "--ngf", "8", "--ndf", "8", "--device", "cpu", "--no-progress"]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _fingerprint_of(ckpt_path) -> str:
    """The replica fingerprint recomputed from what the checkpoint holds."""
    state = torch.load(ckpt_path, weights_only=True)
    cfg = run_config(state["config"])
    nets = []
    for build, key in ((build_generator, "G"), (build_discriminator, "D"),
                       (build_generator, "G_ema")):
        net = build(cfg.model)
        net.load_state_dict(state[key])
        nets.append(net)
    return fingerprint(*nets)


def test_two_processes_keep_identical_replicas_and_resume_on_one(tmp_path):
    r = torchrun(2, "train", *TINY_FLAGS, "--batch-size", "16", "--steps", "6",
                 "--checkpoint-every", "3", "--sample-every", "6", "--seed", "3",
                 "--out", tmp_path, "--name", "ddp")
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()  # rank 0 alone made the run folder
    assert r.stdout.count("trained 6 steps") == 1, "rank 0 alone reports"
    rows = _rows(run_dir)
    replicas = [row for row in rows if row.get("event") == "replicas"]
    assert [row["step"] for row in replicas] == [3, 6]
    for row in replicas:
        assert row["world"] == 2 and len(set(row["sha256"])) == 1, row
    ckpt = run_dir / "checkpoints" / "step-0000006.pt"
    assert _fingerprint_of(ckpt) == replicas[-1]["sha256"][0], \
        "the fingerprint the ranks agreed on is that of the saved networks"
    state = torch.load(ckpt, weights_only=True)
    ranks = state["rng"]["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0], ranks[1]), "each rank its own z"
    losses = [row for row in rows if "loss_d" in row]
    assert losses and all(row["loss_d"] == row["loss_d"] for row in losses)  # finite, logged
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "step-0000000.png", "step-0000006.png"]  # before the first step, then every 6

    resumed = gantool_cli("train", "--resume", run_dir, "--steps", "9", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run_dir} at step 6" in resumed.stderr
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 9
    steps = [row["step"] for row in _rows(run_dir) if "loss_d" in row]
    assert steps == sorted(set(steps)) and steps[-1] == 9


def test_a_conditional_pair_trains_in_two_processes(tmp_path):
    """Labels travel with each rank's share of the batch: the replicas stay identical, and the
    checkpoint draws by class."""
    r = torchrun(2, "train", *TINY_FLAGS, "--conditional", "--batch-size", "16", "--steps", "4",
                 "--checkpoint-every", "2", "--sample-every", "4", "--out", tmp_path,
                 "--name", "ddp-cond")
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    replicas = [row for row in _rows(run_dir) if row.get("event") == "replicas"]
    assert [row["step"] for row in replicas] == [2, 4]
    assert all(row["world"] == 2 and len(set(row["sha256"])) == 1 for row in replicas)
    ckpt = run_dir / "checkpoints" / "last.pt"
    assert _fingerprint_of(ckpt) == replicas[-1]["sha256"][0]
    drawn = gantool_cli("generate", ckpt, "--class", "Sandal,Bag", "--seeds", "0-3", "--grid",
                        tmp_path / "classes.png", "--no-progress")
    assert drawn.returncode == 0 and "2 classes x 4 seeds" in drawn.stdout, drawn.stderr


def test_a_global_batch_that_does_not_split_is_refused(tmp_path):
    r = torchrun(2, "train", *TINY_FLAGS, "--batch-size", "15", "--steps", "2",
                 "--out", tmp_path)
    assert r.returncode != 0
    assert "train.batch_size 15 does not split over 2 processes" in r.stderr
    assert not any(tmp_path.iterdir()), "nothing written"


def test_sync_bn_needs_gpu_processes(tmp_path):
    r = gantool_cli("train", *TINY_FLAGS, "--steps", "1", "--out", tmp_path,
                    "--set", "train.sync_bn=true")
    assert r.returncode == 2 and "train.sync_bn needs several GPU processes" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())
