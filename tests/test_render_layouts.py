"""Output layouts of a render: flat, a sub-folder per thousand seeds, and WebDataset tars,
each resumable and listed in the manifest, with the same bytes per seed as a flat render."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import cli_in_process as cli
from patterns import PatternGenerator


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_subdirs_put_each_thousand_seeds_in_its_folder_and_resume(tiny_ckpt, tmp_path, capsys):
    common = ["generate", tiny_ckpt, "--seeds", "995-1004,2000", "--no-progress"]
    assert cli(*common, "--out", tmp_path / "flat") == 0
    out = tmp_path / "sub"
    assert cli(*common, "--out", out, "--layout", "subdirs") == 0
    listed = rows(out)
    assert sorted(r["file"] for r in listed) == sorted(
        [f"000000/seed{s:06d}.png" for s in range(995, 1000)]
        + [f"001000/seed{s:06d}.png" for s in range(1000, 1005)] + ["002000/seed002000.png"])
    assert {r["layout"] for r in listed} == {"subdirs"}
    for r in listed:  # the same bytes as the flat render
        flat = tmp_path / "flat" / Path(r["file"]).name
        assert (out / r["file"]).read_bytes() == flat.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [".lock", "000000", "001000", "002000",
                                                     "manifest.jsonl"]

    # an interrupted render: a file gone, one on disk but unlisted, a stale temp file
    (out / "001000" / "seed001003.png").unlink()
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in listed
                                if r["file"] != "000000/seed000996.png"))
    stale = out / "001000" / ".seed001001.png.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600,) * 2)
    capsys.readouterr()
    assert cli(*common, "--out", out, "--layout", "subdirs") == 0
    assert "wrote 1 image(s)" in capsys.readouterr().out  # seed 1003 only
    again = rows(out)
    assert {r["file"] for r in again} == {r["file"] for r in listed}
    assert all((out / r["file"]).is_file() for r in again)
    assert not stale.exists()

    # the other layout into either folder would draw every image twice: refused
    assert cli(*common, "--out", out) == 2
    assert "layout subdirs" in capsys.readouterr().err
    assert cli(*common, "--out", tmp_path / "flat", "--layout", "subdirs") == 2
    assert "layout flat" in capsys.readouterr().err


def test_shards_of_a_subdirs_render_merge(tiny_ckpt, tmp_path):
    out = tmp_path / "r"
    for i in range(3):
        assert cli("generate", tiny_ckpt, "--seeds", "990-1009", "--out", out, "--shard",
                   f"{i}/3", "--layout", "subdirs", "--no-progress") == 0
    assert cli("merge-shards", out) == 0
    merged = rows(out)
    assert [r["seed"] for r in merged] == list(range(990, 1010))
    assert merged[-1]["file"] == "shard-00002-of-00003/001000/seed001009.png"
    assert all((out / r["file"]).is_file() for r in merged)


def tar_members(path: Path) -> list[str]:
    r = subprocess.run(["tar", "-tf", path], capture_output=True, text=True, check=True)
    return r.stdout.split()


def test_webdataset_tars_hold_each_seeds_image_and_metadata_in_list_order(tiny_ckpt, tmp_path):
    webdataset = pytest.importorskip("webdataset", reason="the dev extra installs webdataset")
    seeds = "0-9,100"
    assert cli("generate", tiny_ckpt, "--seeds", seeds, "--out", tmp_path / "flat",
               "--no-progress") == 0
    out = tmp_path / "wds"
    assert cli("generate", tiny_ckpt, "--seeds", seeds, "--out", out, "--layout", "webdataset",
               "--tar-images", "4", "--no-progress") == 0
    tars = sorted(p.name for p in out.glob("*.tar"))
    assert tars == ["000000.tar", "000001.tar", "000002.tar"]
    assert not list(out.glob(".*.d"))  # staging folders gone
    order = [*range(10), 100]
    assert tar_members(out / "000002.tar") == [f"seed{s:06d}.{ext}" for s in order[8:]
                                               for ext in ("png", "json")]
    samples = list(webdataset.WebDataset([str(out / t) for t in tars], shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"seed{s:06d}" for s in order]
    for sample, seed in zip(samples, order):
        assert sample["png"] == (tmp_path / "flat" / f"seed{seed:06d}.png").read_bytes()
        meta = json.loads(sample["json"])
        assert meta["seed"] == seed and meta["model"] == str(tiny_ckpt)
        assert {"truncation", "prior", "backend"} <= meta.keys()
    listed = rows(out)
    assert [(r["seed"], r["file"]) for r in listed] == [
        (s, f"{i // 4:06d}.tar") for i, s in enumerate(order)]


def test_webdataset_render_resumes_finished_tars_skipped_a_partial_one_completed(tiny_ckpt,
                                                                                 tmp_path,
                                                                                 capsys):
    out = tmp_path / "wds"
    common = ["generate", tiny_ckpt, "--seeds", "0-11", "--out", out, "--layout", "webdataset",
              "--tar-images", "4", "--no-progress"]
    assert cli(*common) == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    stamp = (out / "000000.tar").stat().st_mtime_ns
    (out / "000001.tar").unlink()  # as if the render had stopped while writing it
    (out / "manifest.jsonl").write_text("".join(
        json.dumps(r) + "\n" for r in rows(out) if r["file"] != "000001.tar"))
    capsys.readouterr()
    assert cli(*common) == 0
    assert "wrote 4 image(s)" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == before  # the same bytes
    assert (out / "000000.tar").stat().st_mtime_ns == stamp  # finished tars untouched
    assert sorted(r["seed"] for r in rows(out)) == list(range(12))

    # another list or tar size would put other seeds under these names
    assert cli(*common[:3], "0-15", *common[4:]) == 2
    assert "holds tars of" in capsys.readouterr().err
    assert cli(*common[:-2], "5", "--no-progress") == 2
    assert "tars of 5" in capsys.readouterr().err


class StopsAfter(PatternGenerator):
    """A generator whose render is interrupted (Ctrl-C) after ``batches`` batches."""

    def __init__(self, batches: int):
        super().__init__(resolution=32)
        self.left = batches

    def generate(self, seeds, truncation):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return super().generate(seeds, truncation)


@pytest.mark.parametrize("parallel", ["thread", "process"])
def test_a_stopped_tar_render_leaves_whole_listed_tars_only(tmp_path, parallel):
    from gantool.sampling.draw import render_images

    out = tmp_path / "wds"
    with pytest.raises(KeyboardInterrupt):  # after 5 batches of 2: tars 0 and 1 can be whole
        render_images(StopsAfter(5), range(20), None, 2, out, layout="webdataset", per_tar=4,
                      progress=False, parallel=parallel)
    tars = sorted(p.name for p in out.glob("*.tar"))
    assert tars in (["000000.tar"], ["000000.tar", "000001.tar"])  # whole ones only
    assert sorted(p.name for p in out.iterdir()) == [".lock", *tars, "manifest.jsonl",
                                                     "tars.json"]
    assert [r["seed"] for r in rows(out)] == list(range(4 * len(tars)))
    for tar in tars:
        assert len(tar_members(out / tar)) == 8
    stats = render_images(PatternGenerator(resolution=32), range(20), None, 2, out,
                          layout="webdataset", per_tar=4, progress=False, parallel=parallel)
    assert (stats["written"], stats["skipped"]) == (20 - 4 * len(tars), 4 * len(tars))
    assert [r["seed"] for r in rows(out)] == list(range(20))


def test_webdataset_shards_merge(tiny_ckpt, tmp_path):
    out = tmp_path / "r"
    for i in range(2):
        assert cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--shard", f"{i}/2",
                   "--layout", "webdataset", "--tar-images", "3", "--no-progress") == 0
    assert cli("merge-shards", out) == 0
    merged = rows(out)
    assert [r["seed"] for r in merged] == list(range(10))
    assert merged[-1]["file"] == "shard-00001-of-00002/000001.tar"
    assert merged[-1]["member"] == "seed000009.png"
