"""User errors: one readable line on stderr, exit code 2, no traceback, nothing written."""

import re

import pytest

from conftest import gantool_cli


@pytest.fixture(scope="module")
def cases(tmp_path_factory, tiny_ckpt):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "empty").mkdir()
    (tmp / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    (tmp / "bad.yaml").write_text("model: [unclosed\n")
    (tmp / "afile").write_text("a file where a folder is asked for")
    (tmp / "one").mkdir()
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp / "one" / "a.png")
    return tmp, tiny_ckpt


ERRORS = [
    (["train", "--preset", "fashion-mnist", "--data", "{tmp}/missing"], "does not exist"),
    (["train", "--preset", "fashion-mnist", "--data", "{tmp}/empty"], "no images"),
    (["train", "--data", "builtin:fashion-mnist", "--resolution", "100"],
     "unsupported resolution 100.*nearest: 80, 96, 112"),
    (["train", "--preset", "fashion-mnst", "--data", "x"], "did you mean 'fashion-mnist'"),
    # library errors name the option; the CLI spells the command's flag for it
    (["train", "--preset", "fashion-mnist"], "^error: --data: no training data"),
    (["train", "--preset", "fashion-mnist", "--set", "train.lr=1"], "did you mean 'train.lr_g'"),
    (["train", "--preset", "fashion-mnist", "--steps", "abc"], "--steps"),
    (["train", "--preset", "fashion-mnist", "--config", "{tmp}/bad.yaml"], "cannot parse"),
    (["train", "--data", "builtin:fashion-mnist", "--cuda-graphs", "--device", "cpu"],
     "train.cuda_graphs captures plain eager steps on a CUDA device"),
    (["train", "--resume", "{tmp}", "--lr-g", "1"],
     "only --max-time, --steps, --sample-every.* may change \\(got --lr-g\\)"),
    (["train", "--resume", "{tmp}/empty"], "neither a checkpoint nor a run directory"),
    (["generate", "{ckpt}", "--seeds", "9-2", "--grid", "{tmp}/g.png"], "runs backwards"),
    (["generate", "{ckpt}", "--seeds", "x", "--grid", "{tmp}/g.png"], "bad seed item"),
    (["generate", "{ckpt}", "--truncation", "-0.5", "--grid", "{tmp}/g.png"],
     "truncation must be a positive number"),
    (["generate", "{ckpt}", "--prior", "uniform", "--truncation", "2", "--grid", "{tmp}/g.png"],
     "above the uniform prior's bound"),
    (["generate", "{tmp}/missing.pt", "--grid", "{tmp}/g.png"], "does not exist"),
    (["generate", "{tmp}/corrupt.pt", "--grid", "{tmp}/g.png"], "cannot read checkpoint"),
    (["generate", "{ckpt}"], "nothing to write"),
    (["eval", "{ckpt}", "--data", "{tmp}/one", "--no-progress"], "holds 1 image; FID and KID"),
    (["generate", "{ckpt}", "--seeds", "0-3", "--out", "{tmp}/afile/x"],
     "cannot write .*afile/x: a part of that path is a file, not a folder"),
    (["generate", "{ckpt}", "--seeds", "0-3", "--grid", "{tmp}/afile/g.png"],
     "cannot write .*afile: a part of that path is a file"),
    (["generate", "{ckpt}", "--seeds", "0-3", "--out", "/proc/gantool-out"],
     "cannot write /proc/gantool-out: "),
    (["eval", "{ckpt}", "--data", "builtin:fashion-mnist", "--json", "{tmp}/afile/r.json"],
     "cannot write in .*afile: a part of that path is a file"),
    (["eval", "{ckpt}", "--data", "builtin:fashion-mnist", "--json", "/proc/r.json"],
     "cannot write in /proc: "),
    (["video", "{ckpt}", "--seeds", "0-1", "--frames-dir", "{tmp}/afile/f"],
     "cannot write .*afile/f: a part of that path"),
    (["export", "{ckpt}", "--out", "{tmp}/afile/e"], "cannot write .*afile/e: a part of that"),
    (["render", "--url", "localhost:1", "--seeds", "0", "--out", "{tmp}/r", "--timeout", "nan"],
     "--timeout.*must be a positive number of seconds, got nan"),
    (["render", "--url", "localhost:1", "--seeds", "0", "--out", "{tmp}/r", "--retry-for",
      "nan"], "--retry-for.*must be zero or a positive number of seconds, got nan"),
]


@pytest.mark.parametrize("argv,message", ERRORS, ids=[" ".join(a[:3]) for a, _ in ERRORS])
def test_user_error_is_one_line(cases, argv, message):
    tmp, ckpt = cases
    out = tmp / "runs"
    argv = [a.format(tmp=tmp, ckpt=ckpt) for a in argv]
    if argv[0] == "train" and "--resume" not in argv:
        argv += ["--out", str(out), "--no-progress"]
    r = gantool_cli(*argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() or not any(out.iterdir()), "a failed start must not leave a run dir"
    assert not (tmp / "g.png").exists()


def test_help_and_presets():
    r = gantool_cli("train", "--help")
    assert r.returncode == 0 and "--resume" in r.stdout and "--preset" in r.stdout
    from gantool.config import preset_names

    r = gantool_cli("train", "--list-presets", env_extra={"COLUMNS": ""})  # piped, no width
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    for name in preset_names():  # every name whole on a line of its own, as users type it
        assert name in lines, name
    assert max(len(line) for line in lines) <= 80  # readable in an 80-column terminal


def _command_summaries(columns: int) -> dict[str, list[str]]:
    """``gantool --help`` at ``columns`` columns: command -> the lines of its summary there."""
    r = gantool_cli("--help", env_extra={"COLUMNS": str(columns)})
    assert r.returncode == 0, r.stderr
    panel = r.stdout.split("─ Commands ")[1].splitlines()[1:]
    summaries: dict[str, list[str]] = {}
    for line in panel:
        if not line.startswith("│"):
            break
        inner = line[1:-1]
        if inner[1] != " ":  # a command's first row: its name, then its summary
            name = inner.split()[0]
            summaries[name] = []
            column = len(inner) - len(inner[1 + len(name):].lstrip())
        summaries[name].append(inner[column:].strip())
    return summaries


def test_every_command_summary_is_a_whole_short_sentence():
    """The top-level help shows each command's first docstring paragraph: a complete sentence,
    one line of text (no line breaks of its own that would leave a line half empty and read as
    cut off), at most two lines at 80 columns, never cut by Rich's '…'."""
    from gantool.cli.main import app

    names = [c.name for c in app.registered_commands]
    wide = _command_summaries(300)
    assert sorted(wide) == sorted(names)
    for name, lines in wide.items():
        assert len(lines) == 1, (name, lines)  # its own line breaks would show here
    narrow = _command_summaries(80)
    for name, lines in narrow.items():
        text = " ".join(lines)
        assert text == wide[name][0], (name, lines)  # the whole of it, wrapped
        assert "…" not in text and text.endswith("."), (name, text)
        assert len(lines) <= 2, (name, lines)


@pytest.mark.slow
def test_every_commands_help_has_an_example_and_no_python_type_names():
    """Each command's --help shows at least one example and names values as words (choices,
    FILE, SEEDS, ...): no <str>, <int>, <bool>, <path>, <list[str]> beside any option."""
    from gantool.cli.main import app

    names = [c.name for c in app.registered_commands]
    assert len(names) >= 11 and "video" in names
    for name in [None, *names]:
        r = gantool_cli(*([name] if name else []), "--help", env_extra={"COLUMNS": "120"})
        assert r.returncode == 0, (name, r.stderr)
        types = r"<(str|int|float|bool|path|int range|float range|list\[\w+\]|tuple[^>]*)>"
        assert not re.search(types, r.stdout), (name, r.stdout)
        if name:
            assert re.search(r"Examples?:", r.stdout), name


@pytest.mark.parametrize("argv,message", [
    (["generate", "{ckpt}", "--backend", "tensorflow", "--grid", "{tmp}/g.png"],
     "'tensorflow' is not one of 'torch', 'onnx', 'trt'"),
    (["video", "{ckpt}", "--protocol", "udp", "--out", "{tmp}/w.mp4"], "is not one of 'grpc'"),
])
def test_fixed_choices_are_refused_in_one_line(cases, argv, message):
    tmp, ckpt = cases
    r = gantool_cli(*[a.format(tmp=tmp, ckpt=ckpt) for a in argv])
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_a_training_error_names_the_flag_the_schema_declares(tmp_path):
    """The library says batch_size; gantool train spells it --batch-size, as declared."""
    r = gantool_cli("train", "--preset", "fashion-mnist", "--data", "builtin:fashion-mnist",
                    "--batch-size", "100000", "--out", tmp_path, "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: --batch-size: the dataset has 6000 images, fewer than the batch size 100000; "
        "lower it or add images")


@pytest.mark.slow  # several real commands: the full tier
def test_old_option_spellings_still_work(tmp_path, tiny_ckpt):
    """Renamed for one name per concept (export --formats and --batch-profile, bench
    --batch-sizes, generate and render --out); scripts using the old names keep working, told
    once per old name on stderr which to use."""
    from gantool.cli.main import DEPRECATED

    for new, old in (("--formats", "--format"), ("--batch-profile", "--batch")):
        r = gantool_cli("export", "--help", env_extra={"COLUMNS": "200"})
        assert f"{new},{old}" in r.stdout.replace(" ", ""), r.stdout
    r = gantool_cli("bench", "--help", env_extra={"COLUMNS": "200"})
    assert "--batch-sizes,--batch" in r.stdout.replace(" ", "")
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-1", "--outdir", tmp_path / "old",
                    "--no-progress")
    assert r.returncode == 0 and sorted(p.name for p in (tmp_path / "old").glob("*.png")) == [
        "seed000000.png", "seed000001.png"]
    assert r.stderr.splitlines()[0] == ("note: generate --outdir is deprecated and will be "
                                        "removed; use --out"), r.stderr
    r = gantool_cli("generate", tiny_ckpt, "--seeds", "0-1", "--out", tmp_path / "new",
                    "--no-progress")
    assert r.returncode == 0 and "deprecated" not in r.stderr
    r = gantool_cli("export", tiny_ckpt, "--out", tmp_path / "e", "--format=bogus", "--batch",
                    "1,2,4")
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 2 and r.returncode == 2 and "did you mean" not in notes[0]
    assert {("export", "--format"), ("export", "--batch")} <= set(DEPRECATED)
