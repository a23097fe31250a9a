"""Small outputs that cannot lie (issue 39, class 7): numbers in other scripts' digits refused
everywhere a user types one, a preset's batch lowered to a small dataset with a line, files
that are not gantool checkpoints said for what they are (never PyTorch's advice to unpickle
them), and encoder workers capped by the cores and the open-file limit."""

from __future__ import annotations

import json
import pickle
import resource
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantool.errors import GantoolError
from gantool.system import usable_cpus

from conftest import cli_in_process as cli
from conftest import gantool_cli, tiny_config

SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() says yes, int() says no
ARABIC_THREE = "\u0663"  # int() and float() read it as 3; Typer's own numbers do not
ARABIC_HALF = "\u0660.\u0665"  # float() reads 0.5


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ---- numbers in other digits -----------------------------------------------------------------
@pytest.fixture(scope="module")
def conditional_ckpt(tmp_path_factory) -> Path:
    from gantool.train.loop import run

    cfg = tiny_config(**{"data.class_labels": True, "train.steps": 2,
                         "train.checkpoint_every": 2})
    return run(cfg, out=tmp_path_factory.mktemp("cond"), progress=False).run_dir / \
        "checkpoints" / "last.pt"


@pytest.mark.parametrize("item", [SUPERSCRIPT_TWO, ARABIC_THREE])
def test_a_class_in_other_digits_is_not_a_class(item):
    from gantool.backends import class_indices
    from gantool.errors import OptionError

    assert class_indices(["a", "b", "c", "d"], ["3"]) == [3]
    with pytest.raises(OptionError, match=f"'{item}' is not a class of this model"):
        class_indices(["a", "b", "c", "d"], [item])


def test_generate_and_explore_refuse_a_superscript_class(conditional_ckpt, tmp_path, capsys):
    assert cli("generate", conditional_ckpt, "--seeds", "0-1", "--out", tmp_path / "o",
               "--class", SUPERSCRIPT_TWO, "--no-progress") == 2
    assert "--class: '\u00b2' is not a class of this model" in _one_error_line(capsys)
    pytest.importorskip("starlette", reason="the explore extra is not installed")
    from gantool.backends import load_backend
    from gantool.cli.explore import Commands
    from gantool.explore.session import Explorer

    explorer = Explorer(load_backend("torch", str(conditional_ckpt)), "c", "torch", "cpu",
                        Commands("gantool generate c.pt", "gantool video c.pt"))
    with pytest.raises(GantoolError, match="class: '\u00b2' is not a class"):  # not a 500
        explorer.grid({"start": "0", "count": "2", "class": SUPERSCRIPT_TWO})
    assert explorer.grid({"start": "0", "count": "2", "class": "3"})["class"] == 3


@pytest.mark.parametrize("query, words", [
    ({"start": ARABIC_THREE, "count": "2"}, "start: '\u0663' is not a whole number"),
    ({"start": SUPERSCRIPT_TWO, "count": "2"}, "is not a whole number"),
    ({"start": "0", "count": "2", "truncation": ARABIC_HALF}, "is not a number"),
])
def test_explore_numbers_are_digits_0_to_9(tiny_ckpt, query, words):
    pytest.importorskip("starlette", reason="the explore extra is not installed")
    from gantool.backends import load_backend
    from gantool.cli.explore import Commands
    from gantool.explore.session import Explorer

    explorer = Explorer(load_backend("torch", str(tiny_ckpt)), "t", "torch", "cpu",
                        Commands("gantool generate t.pt", "gantool video t.pt"))
    with pytest.raises(GantoolError, match=words):
        explorer.grid(query)


@pytest.mark.parametrize("text", [ARABIC_THREE, f"0-{ARABIC_THREE}", SUPERSCRIPT_TWO])
def test_a_seed_list_in_other_digits_is_refused(text):
    from gantool.latent import parse_seeds

    with pytest.raises(ValueError, match="bad seed item"):
        parse_seeds(text)
    assert list(parse_seeds("0-3")) == [0, 1, 2, 3]


@pytest.mark.parametrize("text", [SUPERSCRIPT_TWO, f"cuda:{SUPERSCRIPT_TWO}",
                                  f"cuda:{ARABIC_THREE}"])
def test_devices_in_other_digits_are_one_line(text):
    from gantool.cli.generate import parse_devices as resolve_devices

    with pytest.raises(GantoolError, match="is not cpu, cuda or cuda:N"):
        resolve_devices(text)


@pytest.mark.parametrize("text", [f"{SUPERSCRIPT_TWO}:00", f"{ARABIC_THREE}m",
                                  f"1:{ARABIC_THREE}0"])
def test_a_time_budget_in_other_digits_is_one_line(text):
    from gantool.cli.train import parse_duration

    with pytest.raises(GantoolError, match="cannot read"):
        parse_duration(text)
    assert parse_duration("1:30") == 90


@pytest.mark.parametrize("key, value", [("train.steps", ARABIC_THREE),
                                        ("train.steps", SUPERSCRIPT_TWO),
                                        ("train.lr_g", ARABIC_HALF)])
def test_config_numbers_in_other_digits_are_refused(key, value):
    from gantool.config import RunConfig, apply_overrides
    from gantool.errors import ConfigError

    with pytest.raises(ConfigError, match=f"bad value .* for {key}: expected"):
        apply_overrides(RunConfig(), {key: value})


def test_other_number_options_refuse_other_digits(tiny_ckpt, tmp_path, capsys):
    from gantool.bench import parse_ints
    from gantool.cli.video import _grid

    for args, words in (
            (["--truncation", ARABIC_HALF, "--grid", tmp_path / "g.png"], "is not a number"),
            (["--truncation-sweep", ARABIC_HALF, "--grid", tmp_path / "g.png"],
             "not a number in digits 0-9"),
            (["--seeds", f"{SUPERSCRIPT_TWO}-9", "--grid", tmp_path / "g.png"], "bad seed item")):
        assert cli("generate", tiny_ckpt, *args) == 2
        assert words in _one_error_line(capsys)
    assert not (tmp_path / "g.png").exists()
    with pytest.raises(GantoolError, match="write COLSxROWS"):
        _grid(f"{ARABIC_THREE}x2")
    with pytest.raises(GantoolError, match="expects positive integers"):
        parse_ints(ARABIC_THREE, "--batch-sizes")


# ---- a preset's batch on a small dataset -----------------------------------------------------
def _images(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


TINY_FLAGS = ["--resolution", "28", "--channels", "1", "--ngf", "8", "--ndf", "8", "--steps",
              "1", "--no-progress"]


def test_a_presets_batch_is_lowered_to_a_small_dataset_with_a_line(tmp_path, capsys):
    data = _images(tmp_path / "three", 3)
    assert cli("train", "--preset", "fashion-mnist", "--data", data, *TINY_FLAGS, "--out",
               tmp_path / "runs") == 0
    said = capsys.readouterr().err
    assert "note: batches of 3 images, not 128: the data holds 3" in said
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["train"]["batch_size"] == 3
    # a batch size the user named is theirs: one line, as before
    assert cli("train", "--preset", "fashion-mnist", "--data", data, *TINY_FLAGS,
               "--batch-size", "8", "--out", tmp_path / "named") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the data's own line
    assert last.startswith("error: --batch-size: the dataset has 3 images, fewer than the "
                           "batch size 8"), last


def test_the_trainer_lowers_the_batch_only_when_asked(tmp_path):
    from rich.console import Console

    from gantool.errors import OptionError
    from gantool.train.trainer import Trainer

    cfg = tiny_config(**{"data.path": str(_images(tmp_path / "five", 5)), "train.steps": 1})
    console = Console(record=True, width=200)
    trainer = Trainer(cfg, console, progress=False, fit_batch=True)
    assert trainer.cfg.train.batch_size == 5 and trainer.hw.local_batch == 5
    assert "batches of 5 images, not 16" in console.export_text()
    with pytest.raises(OptionError, match="fewer than the batch size 16"):
        Trainer(cfg, console, progress=False)  # the library's default: the caller's batch


# ---- files that are not gantool checkpoints ----------------------------------------------------
def _not_checkpoints(folder: Path, tiny_ckpt: Path) -> dict[str, str]:
    """name -> what the error must say, for files of each kind."""
    folder.mkdir()
    torch.save(torch.nn.Linear(2, 2), folder / "module.pt")
    (folder / "pickle.pt").write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    data = tiny_ckpt.read_bytes()
    (folder / "half.pt").write_bytes(data[:len(data) // 2])
    (folder / "head.pt").write_bytes(data[:6773])  # torch said [Errno 22] Invalid argument
    (folder / "empty.pt").write_bytes(b"")
    (folder / "text.pt").write_text("not a checkpoint at all")
    torch.save({"a": 1}, folder / "dict.pt")
    return {"module.pt": "it holds a pickled torch.nn.modules.linear.Linear",
            "pickle.pt": "it is a Python pickle, not a gantool checkpoint",
            "half.pt": "the file is truncated", "head.pt": "the file is truncated",
            "empty.pt": "the file is empty", "text.pt": "it is not a PyTorch file",
            "dict.pt": "is not a gantool checkpoint"}


def test_files_that_are_not_checkpoints_are_said_for_what_they_are(tiny_ckpt, tmp_path):
    from gantool.models.checkpoint import load_checkpoint

    for name, words in _not_checkpoints(tmp_path / "f", tiny_ckpt).items():
        with pytest.raises(GantoolError) as e:
            load_checkpoint(tmp_path / "f" / name)
        said = str(e.value)
        assert words in said and "\n" not in said, said
        assert "weights_only" not in said and "Errno" not in said, said


@pytest.mark.slow  # a process per command (torch's own warnings on stderr are what it checks)
@pytest.mark.parametrize("command", [["info", "{f}"],
                                     ["generate", "{f}", "--seeds", "0", "--out", "{tmp}/o"],
                                     ["train", "--resume", "{f}"]])
def test_every_command_says_it_in_one_line(tiny_ckpt, tmp_path, command):
    _not_checkpoints(tmp_path / "f", tiny_ckpt)
    for name, words in (("module.pt", "it holds a pickled torch.nn.modules.linear.Linear"),
                        ("half.pt", "the file is truncated")):
        path = tmp_path / "f" / name
        r = gantool_cli(*[a.replace("{f}", str(path)).replace("{tmp}", str(tmp_path))
                          for a in command])
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"error: cannot read checkpoint {path}: {words}"), lines


# ---- encoder workers -----------------------------------------------------------------------
def test_workers_are_capped_by_the_cores_with_a_line(tiny_ckpt, tmp_path, capsys):
    from gantool.sampling.writer import capped_workers

    assert capped_workers(None) == (usable_cpus(), "")
    assert capped_workers(1) == (1, "")
    workers, note = capped_workers(100_000)
    assert workers == usable_cpus() and "not 100000: one per usable core" in note
    out = tmp_path / "o"
    assert cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", out, "--format", "jpg",
               "--workers", "100000", "--no-progress") == 0
    err = capsys.readouterr().err
    assert f"note: {usable_cpus()} encoding worker(s), not 100000" in err, err
    assert len(list(out.glob("*.jpg"))) == 10
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 10


def test_workers_are_capped_by_the_open_file_limit(tiny_ckpt, tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def low_limit():  # room for one worker's files (writer.FILES_KEPT + FILES_PER_WORKER)
        resource.setrlimit(resource.RLIMIT_NOFILE, (72, hard))

    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-9", "--out", tmp_path / "o",
                    "--format", "jpg", "--workers", "100000", "--no-progress",
                    preexec_fn=low_limit)
    assert r.returncode == 0, r.stderr
    assert "note: 1 encoding worker(s), not 100000: " in r.stderr, r.stderr
    assert "the open-file limit (72, ulimit -n)" in r.stderr or usable_cpus() == 1, r.stderr
    assert len(list((tmp_path / "o").glob("*.jpg"))) == 10


def test_no_workers_is_one_line(tiny_ckpt, tmp_path, capsys):
    assert cli("generate", tiny_ckpt, "--seeds", "0", "--out", tmp_path / "o", "--workers",
               "-1") == 2
    assert "--workers" in _one_error_line(capsys)
