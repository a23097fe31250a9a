"""Outputs that cannot lie: a render folder and each shard name the model (its weights'
SHA-256), format and layout they were drawn with and refuse a resume or a merge that differs;
the merge trusts no row it reads; an empty shard is a shard; a stop between a tar and its rows
loses no row."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import cli_in_process as cli


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def other_ckpt(tiny_ckpt, tmp_path_factory) -> Path:
    """The tiny checkpoint with one weight changed: another model, the same architecture."""
    state = torch.load(tiny_ckpt, weights_only=True)
    for key in ("G", "G_ema"):
        if state.get(key) is not None:
            name = next(k for k, v in state[key].items() if v.is_floating_point())
            state[key][name] = state[key][name] + 0.5
    path = tmp_path_factory.mktemp("other") / "other.pt"
    torch.save(state, path)
    return path


def test_rows_name_the_model_format_and_a_resume_that_differs_is_refused(
        tiny_ckpt, other_ckpt, tmp_path, capsys):
    out = tmp_path / "r"
    common = ["--seeds", "0-5", "--out", out, "--no-progress"]
    assert cli("generate", tiny_ckpt, *common) == 0
    first = rows(out)[0]
    assert first["format"] == "png" and len(first["weights_sha256"]) == 64
    capsys.readouterr()
    assert cli("info", tiny_ckpt) == 0
    assert first["weights_sha256"] in capsys.readouterr().out  # as info says it
    for args, said in (([other_ckpt, "--seeds", "0-9"], "rendered with model "),
                       ([tiny_ckpt, "--seeds", "0-9", "--format", "jpg"],
                        "rendered with format png, not format jpg"),
                       ([tiny_ckpt, "--seeds", "0-9", "--no-ema"], "rendered with model "),
                       ([tiny_ckpt, "--seeds", "0-9", "--layout", "subdirs"],
                        "layout flat, not layout subdirs")):
        assert cli("generate", *args, "--out", out, "--no-progress") == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err
    assert len(rows(out)) == 6 and len(list(out.glob("seed*"))) == 6
    assert cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--no-progress") == 0
    assert sorted(r["seed"] for r in rows(out)) == list(range(10))


def test_a_folder_of_an_older_gantool_resumes_on_what_its_rows_name(tiny_ckpt, tmp_path,
                                                                    capsys):
    out = tmp_path / "old"
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", out, "--no-progress") == 0
    old = [{k: v for k, v in r.items() if k not in ("format", "weights_sha256")}
           for r in rows(out)]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert cli("generate", tiny_ckpt, "--seeds", "0-7", "--out", out, "--format", "webp",
               "--no-progress") == 2  # the files' suffix says png
    assert "format png, not format webp" in capsys.readouterr().err
    assert cli("generate", tiny_ckpt, "--seeds", "0-7", "--out", out, "--no-progress") == 0
    assert sorted(r["seed"] for r in rows(out)) == list(range(8))


def test_a_tar_folder_refuses_another_format_and_relists_rows_a_stop_lost(tiny_ckpt, tmp_path,
                                                                         capsys):
    out = tmp_path / "tars"
    common = ["generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--layout", "webdataset",
              "--tar-images", "4", "--no-progress"]
    assert cli(*common) == 0
    whole = (out / "manifest.jsonl").read_bytes()
    lines = whole.splitlines(keepends=True)
    # killed after linking tars 1 and 2, before listing their rows; one row cut mid-line
    (out / "manifest.jsonl").write_bytes(b"".join(lines[:5]) + lines[5][:20])
    assert cli(*common) == 0
    assert sorted(json.dumps(r, sort_keys=True) for r in rows(out)) == sorted(
        json.dumps(json.loads(x), sort_keys=True) for x in lines)
    assert cli(*common[:-1], "--format", "jpg", "--no-progress") == 2
    assert "format png, not format jpg" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.tar")) == ["000000.tar", "000001.tar",
                                                         "000002.tar"]
    # every row gone, and a tar of other settings: its own records refuse it
    (out / "manifest.jsonl").write_bytes(b"")
    assert cli(*common, "--truncation", "0.5") == 2
    assert "000000.tar holds images rendered with truncation none" in capsys.readouterr().err


def shard_render(ckpt, out: Path, seeds: str, count: int, *extra) -> None:
    for i in range(count):
        assert cli("generate", ckpt, "--seeds", seeds, "--out", out, "--shard", f"{i}/{count}",
                   "--no-progress", *extra) == 0


def test_empty_shards_are_shards(tiny_ckpt, tmp_path):
    for layout in ("flat", "webdataset"):
        out = tmp_path / layout
        shard_render(tiny_ckpt, out, "0-2", 5, "--layout", layout)
        assert cli("merge-shards", out) == 0
        assert [r["seed"] for r in rows(out)] == [0, 1, 2]


def test_the_merge_refuses_shards_of_two_models_or_formats(tiny_ckpt, other_ckpt, tmp_path,
                                                           capsys):
    for name, second in (("model", [other_ckpt]), ("format", [tiny_ckpt, "--format", "jpg"])):
        out = tmp_path / name
        assert cli("generate", tiny_ckpt, "--seeds", "0-5", "--out", out, "--shard", "0/2",
                   "--no-progress") == 0
        assert cli("generate", second[0], "--seeds", "0-5", "--out", out, "--shard", "1/2",
                   "--no-progress", *second[1:]) == 0
        capsys.readouterr()
        assert cli("merge-shards", out) == 2
        err = capsys.readouterr().err
        assert f"rendered with {name} " in err and "one render's shards only" in err
        assert not (out / "manifest.jsonl").exists()


def test_the_merge_trusts_no_row_it_reads(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "flat"
    shard_render(tiny_ckpt, out, "0-5", 2)
    shard = out / "shard-00001-of-00002"
    manifest = (shard / "manifest.jsonl").read_text()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not yours")
    (shard / "link.png").symlink_to(outside)
    for name in ("../../outside.png", str(outside), "link.png"):
        row = {**json.loads(manifest.splitlines()[0]), "file": name}
        (shard / "manifest.jsonl").write_text(json.dumps(row) + "\n" + manifest)
        capsys.readouterr()
        assert cli("merge-shards", out) == 2
        assert "which is not in its shard folder" in capsys.readouterr().err
        assert not (out / "manifest.jsonl").exists()

    tars = tmp_path / "tars"
    shard_render(tiny_ckpt, tars, "0-5", 2, "--layout", "webdataset")
    tar = tars / "shard-00001-of-00002" / "000000.tar"
    with tarfile.open(tar) as t:
        second = t.getmembers()[2]  # the second sample's image
    data = tar.read_bytes()
    for cut, said in ((second.offset, "is not in the tar"),
                      (second.offset_data + 10, "is not a whole tar")):
        tar.write_bytes(data[:cut])
        capsys.readouterr()
        assert cli("merge-shards", tars) == 2
        assert said in capsys.readouterr().err
    tar.write_bytes(data)
    assert cli("merge-shards", tars) == 0 and len(rows(tars)) == 6


@pytest.mark.slow
def test_one_device_needs_no_merge_and_two_for_one_seed_merge(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "one"
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", out, "--devices", "cpu",
               "--no-progress") == 0
    assert "4 image(s) from 1 device(s)" in capsys.readouterr().out
    assert [r["seed"] for r in rows(out)] == [0, 1, 2, 3]
    out = tmp_path / "two"
    assert cli("generate", tiny_ckpt, "--seeds", "7", "--out", out, "--devices", "cpu,cpu",
               "--no-progress") == 0
    assert [r["seed"] for r in rows(out)] == [7]
    assert os.path.isdir(out / "shard-00001-of-00002")


@pytest.mark.slow  # an export (test_serve's Triton render checks the same in the slow tier)
def test_an_export_names_its_checkpoint_s_model_so_a_render_resumes_across_backends(
        tiny_ckpt, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    export = tmp_path / "export"
    assert cli("export", tiny_ckpt, "--out", export, "--formats", "onnx") == 0
    out = tmp_path / "r"
    assert cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", out, "--no-progress") == 0
    assert cli("generate", export, "--backend", "onnx", "--seeds", "0-7", "--out", out,
               "--no-progress") == 0
    listed = rows(out)
    assert [r["backend"] for r in listed] == ["torch"] * 4 + ["onnx"] * 4
    assert len({r["weights_sha256"] for r in listed}) == 1
    capsys.readouterr()
    assert cli("info", export) == 0
    assert listed[0]["weights_sha256"] in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["flat", "webdataset"])
def test_rows_of_wrong_types_are_damage_never_a_traceback(tiny_ckpt, tmp_path, capsys, layout):
    source = tmp_path / "source"
    shard_render(tiny_ckpt, source, "0-5", 2, "--layout", layout, "--tar-images", "2")
    for n, (key, value) in enumerate((k, v) for k in ("seed", "file", "member", None)
                                     for v in ("x", None, [], {"a": 1}, [1], 1.5, True)):
        out = tmp_path / f"case{n}"
        shutil.copytree(source, out)
        manifest = out / "shard-00001-of-00002" / "manifest.jsonl"
        lines = manifest.read_text().splitlines()
        row = value if key is None else {**json.loads(lines[0]), key: value}
        manifest.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
        capsys.readouterr()
        code = cli("merge-shards", out)
        err = capsys.readouterr().err
        assert code == 0 or code == 2 and err.startswith("error:"), (key, value, err)
        assert cli("generate", tiny_ckpt, "--seeds", "0-5", "--out", out, "--shard", "1/2",
                   "--layout", layout, "--tar-images", "2", "--no-progress") == 0, (key, value)
        code = cli("merge-shards", out)  # a row naming a file of no seed stays an error
        err = capsys.readouterr().err
        last = (err.strip().splitlines() or [""])[-1]
        assert code == 0 or code == 2 and last.startswith("error:"), (key, value, err)
        if key in ("seed", None):  # the rerun listed the image again
            assert len(rows(out)) == 6, (key, value)
