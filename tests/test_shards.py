"""Sharded renders: blocks of a seed list that cover it once, named by a flag or the job's
environment, each in its own folder, and the merge that checks them and writes one index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gantool.latent import parse_seeds
from gantool.sampling.shards import shard_from

from conftest import cli_in_process as cli

SEEDS = "0-40,100-110,7"  # ranges, a single seed, and a seed the list names twice


def files(folder: Path) -> dict[int, bytes]:
    """Each seed's image bytes, read through the folder's manifest."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    return {row["seed"]: (folder / row["file"]).read_bytes() for row in rows}


@pytest.mark.parametrize("spec", ["0-9", "0-40,100-110,7", "5", "0-2,10-12,20-22,30-32"])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 50])
def test_shards_are_disjoint_contiguous_blocks_that_cover_the_list(spec, count):
    seeds = parse_seeds(spec)
    parts = [list(seeds.part(i, count)) for i in range(count)]
    assert sum(parts, []) == list(seeds)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_shard_of_a_hundred_billion_seeds_is_a_range_not_a_list():
    part = parse_seeds("0-99999999999").part(7, 8)
    assert str(part) == "87500000000-99999999999" and len(part) == 12_500_000_000


def test_the_flag_wins_over_the_environment_and_each_job_system_is_read():
    slurm = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "4",
             "SLURM_ARRAY_TASK_STEP": "4", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert str(shard_from(None, slurm)) == "2/3"
    assert shard_from("0/1", slurm, "--shard").source == "--shard"
    assert str(shard_from(None, {"RANK": "3", "WORLD_SIZE": "4"})) == "3/4"
    k8s = {"JOB_COMPLETION_INDEX": "5", "GANTOOL_SHARDS": "8"}
    assert str(shard_from(None, k8s)) == "5/8"
    assert shard_from(None, {}) is None
    assert str(shard_from(None, {"RANK": "0", "WORLD_SIZE": "1", "JOB_COMPLETION_INDEX": "5"})) \
        == "0/1"  # the first job that names a shard wins (a plain torchrun in a pod)
    assert str(shard_from(None, {**slurm, "JOB_COMPLETION_INDEX": "5"})) == "2/3"
    for bad in ("8/8", "-1/2", "1/0", "a/b", "3"):
        with pytest.raises(ValueError, match="^shard '"):  # the CLI names its flag
            shard_from(bad, {})
    with pytest.raises(ValueError, match="RANK/WORLD_SIZE"):
        shard_from(None, {"RANK": "4", "WORLD_SIZE": "4"})


@pytest.mark.parametrize("environ, have, lack", [
    ({"JOB_COMPLETION_INDEX": "5"}, "JOB_COMPLETION_INDEX", "GANTOOL_SHARDS"),
    ({"GANTOOL_SHARDS": "8"}, "GANTOOL_SHARDS", "JOB_COMPLETION_INDEX"),
    ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
    ({"RANK": "1"}, "RANK", "WORLD_SIZE"),
    ({"WORLD_SIZE": "4"}, "WORLD_SIZE", "RANK"),
])
def test_a_job_that_names_its_index_but_not_its_count_is_refused(environ, have, lack):
    """Every process of such a job would draw every seed: one line naming what is missing."""
    with pytest.raises(ValueError, match=f"{have} is set but {lack} is not"):
        shard_from(None, environ)


def test_a_shard_in_other_digits_is_refused():
    for bad in ("\u0661/\u0662", "\u00b2/3"):  # Arabic-Indic 1/2 (int reads it), superscript 2
        with pytest.raises(ValueError, match="digits 0-9"):
            shard_from(bad, {})


@pytest.mark.slow
def test_two_four_and_eight_shards_merge_to_the_single_render_byte_for_byte(tiny_ckpt, tmp_path):
    common = ["generate", tiny_ckpt, "--seeds", SEEDS, "--truncation", "0.8", "--no-progress"]
    assert cli(*common, "--out", tmp_path / "one") == 0
    single = files(tmp_path / "one")
    order = [json.loads(line)["seed"]
             for line in (tmp_path / "one" / "manifest.jsonl").read_text().splitlines()]
    for count in (2, 4, 8):
        out = tmp_path / f"in-{count}"
        for i in reversed(range(count)):  # any order
            assert cli(*common, "--out", out, "--shard", f"{i}/{count}") == 0
        assert cli("merge-shards", out) == 0
        merged = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert [row["seed"] for row in merged] == order  # each seed once, in list order
        assert all(row["file"].startswith("shard-") for row in merged)
        assert files(out) == single


def test_the_merge_names_a_missing_shard_a_stranger_and_unfinished_seeds(tiny_ckpt, tmp_path,
                                                                         capsys):
    common = ["generate", tiny_ckpt, "--seeds", "0-11", "--no-progress"]
    out = tmp_path / "r"
    for i in (0, 2):
        assert cli(*common, "--out", out, "--shard", f"{i}/3") == 0
    capsys.readouterr()
    assert cli("merge-shards", out) == 2
    assert "shard(s) 1 of 3 are missing" in capsys.readouterr().err
    assert not (out / "manifest.jsonl").exists()

    # a shard of another count among them (the same seeds split in two)
    assert cli(*common, "--out", tmp_path / "two", "--shard", "1/2") == 0
    (tmp_path / "two" / "shard-00001-of-00002").rename(out / "shard-00001-of-00002")
    capsys.readouterr()
    assert cli("merge-shards", out) == 2
    assert "one render's shards only" in capsys.readouterr().err
    (out / "shard-00001-of-00002").rename(tmp_path / "stranger")

    # the same shard copied in under another index's name
    copy = out / "shard-00001-of-00003"
    copy.mkdir()
    for f in (out / "shard-00002-of-00003").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert cli("merge-shards", out) == 2
    assert "holds shard 2/3" in capsys.readouterr().err
    for f in copy.iterdir():
        f.unlink()
    copy.rmdir()

    # a shard with a seed deleted after its render
    assert cli(*common, "--out", out, "--shard", "1/3") == 0
    (out / "shard-00001-of-00003" / "seed000005.png").unlink()
    capsys.readouterr()
    assert cli("merge-shards", out) == 2
    assert "seed000005.png is listed but not on disk" in capsys.readouterr().err
    assert cli(*common, "--out", out, "--shard", "1/3") == 0  # the rerun draws it again
    assert cli("merge-shards", out) == 0
    assert len(files(out)) == 12


def test_a_shard_from_the_environment_is_said_and_refuses_a_grid(tiny_ckpt, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    out = tmp_path / "r"
    assert cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--no-progress") == 0
    said = capsys.readouterr().err
    assert "shard 1/2 (from SLURM_ARRAY_TASK_ID)" in said and "5-9" in said
    assert sorted(files(out / "shard-00001-of-00002")) == [5, 6, 7, 8, 9]
    assert cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--grid",
               tmp_path / "g.png", "--no-progress") == 2
    assert "a grid needs them all" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
    # another seed list into the same shard folder would mix two renders
    assert cli("generate", tiny_ckpt, "--seeds", "0-19", "--out", out, "--no-progress") == 2
    assert "holds shard 1/2 of seeds 0-9" in capsys.readouterr().err
    # 0/1 renders the whole list where it always did
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", tmp_path / "all", "--shard",
               "0/1", "--no-progress") == 0
    assert sorted(files(tmp_path / "all")) == [0, 1, 2, 3]


def test_a_pod_without_its_shard_count_draws_nothing_and_says_what_is_missing(
        tiny_ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.delenv("GANTOOL_SHARDS", raising=False)
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "r"
    assert cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: JOB_COMPLETION_INDEX is set but "
                                               "GANTOOL_SHARDS is not"), err
    assert not out.exists()
    # the flag still wins: a pod may render a shard it names
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", out, "--shard", "0/1",
               "--no-progress") == 0
    assert sorted(files(out)) == [0, 1, 2, 3]


def test_devices_in_a_sharded_job_is_refused_not_drawn_by_every_process(tiny_ckpt, tmp_path,
                                                                         capsys, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    out = tmp_path / "r"
    assert cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--devices", "cpu,cpu",
               "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --devices splits the whole seed list, but this process is shard 1/4 "
                   "of a job (SLURM_ARRAY_TASK_ID): each of the job's processes would draw "
                   "every seed; leave out --devices (each then draws its shard)"], err
    assert not out.exists()


def test_the_merge_never_replaces_the_manifest_of_a_render_into_that_folder(tiny_ckpt, tmp_path,
                                                                           capsys):
    out = tmp_path / "r"
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", out, "--no-progress") == 0
    before = (out / "manifest.jsonl").read_bytes()
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", out, "--shard", "0/1",
               "--no-progress") == 0
    for i in range(2):
        assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", out, "--shard", f"{i}/2",
                   "--no-progress") == 0
    capsys.readouterr()
    assert cli("merge-shards", out) == 2
    assert "lists images rendered into" in capsys.readouterr().err
    assert (out / "manifest.jsonl").read_bytes() == before


@pytest.mark.slow
def test_the_slurm_array_script_renders_its_tasks_shards(tiny_ckpt, tmp_path):
    script = Path(__file__).resolve().parents[1] / "deploy" / "slurm" / "render-array.sh"
    bin_dir = Path(sys.executable).parent  # where the gantool console script is installed
    out = tmp_path / "renders"
    for task in (7, 5):  # --array=5-7:2 gives tasks 5 and 7, MIN 5, STEP 2, COUNT 2
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
               "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "5",
               "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "2"}
        r = subprocess.run(["bash", script, tiny_ckpt, "0-5", out, "--truncation", "0.5"],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    assert cli("merge-shards", out) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["truncation"]) for r in rows] == [(s, 0.5) for s in range(6)]


def test_the_kubernetes_indexed_job_gives_each_pod_its_shard_of_the_service():
    import yaml

    k8s = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
    job = yaml.safe_load((k8s / "render-job.yaml").read_text())
    service = yaml.safe_load((k8s / "service.yaml").read_text())
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    shards = [shard_from(None, {**env, "JOB_COMPLETION_INDEX": str(i)})
              for i in range(spec["completions"])]
    assert [(s.index, s.count) for s in shards] == [(i, spec["completions"])
                                                     for i in range(spec["completions"])]
    args = container["args"]
    assert args[:2] == ["gantool", "render"] and "--shard" not in " ".join(args)
    assert f"--url={service['metadata']['name']}:8001" in args
    out = next(a.split("=", 1)[1] for a in args if a.startswith("--out="))
    assert out in {m["mountPath"] for m in container["volumeMounts"]}


@pytest.mark.slow
def test_devices_render_a_shard_per_process_and_merge_them(tiny_ckpt, tmp_path, capsys):
    common = ["generate", tiny_ckpt, "--seeds", "0-19", "--truncation", "0.7", "--no-progress"]
    assert cli(*common, "--out", tmp_path / "one") == 0
    out = tmp_path / "two"
    assert cli(*common, "--out", out, "--devices", "cpu,cpu") == 0
    said = capsys.readouterr().out
    assert "20 image(s) from 2 device(s) (cpu, cpu)" in said
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000-of-00002",
                                                           "shard-00001-of-00002"]
    assert files(out) == files(tmp_path / "one")
    # a process that fails is one line naming its shard and device; the others' images stay
    again = tmp_path / "again"
    assert cli("generate", tiny_ckpt, "--seeds", "0-5", "--out", again, "--shard", "1/2",
               "--no-progress") == 0
    capsys.readouterr()
    assert cli(*common, "--out", again, "--devices", "cpu,cpu") == 2
    err = capsys.readouterr().err
    assert "shard 1/2 on cpu failed (exit code 2)" in err and "holds shard 1/2 of seeds 0-5" in err
    assert len(files(again / "shard-00000-of-00002")) == 10


@pytest.mark.parametrize("devices,extra,message", [
    ("all", [], "this machine has 0 CUDA GPU(s)"),
    ("cuda:0", [], "not among this machine's 0 CUDA GPU(s)"),
    ("tpu", [], "'tpu' is not cpu, cuda or cuda:N"),
    ("cpu,cpu", ["--grid", "g.png"], "leave out --grid, --shard and --device"),
    ("cpu,cpu", ["--shard", "0/2"], "leave out --grid, --shard and --device"),
])
def test_devices_refuses_what_it_cannot_do_in_one_line(tiny_ckpt, tmp_path, capsys, devices,
                                                        extra, message):
    import torch

    if torch.cuda.is_available() and "CUDA" in message:
        pytest.skip("this machine has a CUDA GPU")
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", tmp_path / "r", "--devices",
               devices, *extra, "--no-progress") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_torchrun_gives_each_process_its_shard(tiny_ckpt, tmp_path):
    from conftest import torchrun

    out = tmp_path / "r"
    r = torchrun(2, "generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "shard 0/2 (from RANK/WORLD_SIZE)" in r.stderr and "shard 1/2" in r.stderr
    assert cli("merge-shards", out) == 0
    assert sorted(files(out)) == list(range(10))
