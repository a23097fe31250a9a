"""Records gantool writes and reads back: an export's export.json, a plan's .plan.json sidecar,
the ONNX model's metadata, a run's config.json, session.json and metrics.jsonl, a bench baseline.
Each key holding a value of the wrong kind (a string, a list, null, a number, an object, a
negative or NaN count) is one ``error:`` line naming the file and the key, with exit code 2;
where the reader is lenient on purpose (the report, a resume), the damaged part is skipped and
counted. Never a traceback: the CLI runs in this process, so one would fail the test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import cli_in_process as cli

WRONG = {"string": "abc", "list": ["x"], "null": None, "number": 5, "object": {"a": 1},
         "negative": -3, "nan": float("nan")}


def one_error(capsys, code: int, *words: str) -> str:
    """The single ``error:`` line a refused command printed, holding every word."""
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
    assert all(w in err[0] for w in words), (words, err[0])
    return err[0]


def edited(record, path: tuple, value):
    """``record`` with the value at ``path`` (keys) replaced by ``value`` (deleted: ...)."""
    if not path:
        return value
    head, *rest = path
    out = dict(record)
    if rest:
        out[head] = edited(record[head], tuple(rest), value)
    elif value is ...:
        del out[head]
    else:
        out[head] = value
    return out


@pytest.fixture(scope="module")
def export(tiny_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("records") / "export"
    assert cli("export", tiny_ckpt, "--out", out) == 0
    return out


def copy_export(export: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    return folder


# ---- export.json ---------------------------------------------------------------------------
# (path of keys, the kinds of value that are wrong there)
EXPORT_KEYS = [
    (("hashes",), ["string", "list", "null", "number"]),
    (("hashes", "model.onnx"), ["string", "list", "null", "number"]),
    (("hashes", "model.onnx", "bytes"), ["string", "list", "null", "object", "negative", "nan"]),
    (("hashes", "model.onnx", "sha256"), ["list", "null", "number", "object"]),
    (("metadata",), ["string", "list", "null", "number"]),
    (("metadata", "gantool.nz"), ["list", "null", "number", "object"]),
]
EXPORT_CASES = [(path, kind) for path, kinds in EXPORT_KEYS for kind in kinds]


# each case through one reader, the two readers taking turns (both read export.json through
# one function: artifacts.export_record); benchmarks/reliability.py's records group runs more
EXPORT_RUNS = [(p, k, ("verify", "generate")[i % 2]) for i, (p, k) in enumerate(EXPORT_CASES)]


@pytest.mark.parametrize("path,kind,command", EXPORT_RUNS,
                         ids=[f"{'.'.join(p)}={k}-{c}" for p, k, c in EXPORT_RUNS])
def test_export_json_values_of_the_wrong_kind_are_one_line(export, tmp_path, capsys, command,
                                                           path, kind):
    folder = copy_export(export, tmp_path)
    record = json.loads((folder / "export.json").read_text())
    (folder / "export.json").write_text(json.dumps(edited(record, path, WRONG[kind])))
    args = (["info", folder, "--verify"] if command == "verify" else
            ["generate", folder, "--backend", "onnx", "--seeds", "0", "--grid", tmp_path / "g.png"])
    key = path[0] + "".join(f"[{k!r}]" for k in path[1:])
    one_error(capsys, cli(*args), f"{folder / 'export.json'}: key {key} is ")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("kind", ["string", "list", "null", "number", "not json", "not utf-8"])
def test_export_json_that_is_not_an_object_is_one_line(export, tmp_path, capsys, kind):
    folder = copy_export(export, tmp_path)
    text = {"not json": b"{", "not utf-8": b'{"hashes": "\xff"}'}.get(kind)
    (folder / "export.json").write_bytes(text or json.dumps(WRONG[kind]).encode())
    said = "is not valid JSON" if text else "holds"
    one_error(capsys, cli("info", folder, "--verify"), str(folder / "export.json"), said)
    one_error(capsys, cli("generate", folder / "model.onnx", "--backend", "onnx", "--seeds", "0",
                          "--grid", tmp_path / "g.png"), str(folder / "export.json"), said)


def test_export_json_missing_a_key(export, tmp_path, capsys):
    """No hashes: an export from before they were recorded, drawn as it is and refused by
    --verify in its own words; a hash without its size or SHA-256 is damaged; the Triton
    repository writer needs the metadata."""
    folder = copy_export(export, tmp_path)
    record = json.loads((folder / "export.json").read_text())
    (folder / "export.json").write_text(json.dumps(edited(record, ("hashes",), ...)))
    one_error(capsys, cli("info", folder, "--verify"), "records no hashes")
    assert cli("generate", folder, "--backend", "onnx", "--seeds", "0", "--grid",
               tmp_path / "g.png") == 0
    capsys.readouterr()
    for key in ("bytes", "sha256"):
        damaged = edited(record, ("hashes", "model.onnx", key), ...)
        (folder / "export.json").write_text(json.dumps(damaged))
        one_error(capsys, cli("info", folder, "--verify"),
                  f"key hashes['model.onnx']['{key}'] is missing")
    from gantool.errors import GantoolError
    from gantool.export.triton import write_repository

    (folder / "export.json").write_text(json.dumps(edited(record, ("metadata",), ...)))
    with pytest.raises(GantoolError, match=r"export\.json: key metadata is missing; run gantool"):
        write_repository(folder)


def test_export_json_naming_a_file_outside_the_folder_is_refused(export, tmp_path, capsys):
    folder = copy_export(export, tmp_path)
    record = json.loads((folder / "export.json").read_text())
    record["hashes"]["../model.onnx"] = record["hashes"]["model.onnx"]
    (folder / "export.json").write_text(json.dumps(record))
    one_error(capsys, cli("info", folder, "--verify"), "key hashes names '../model.onnx'")


# ---- the plan's sidecar --------------------------------------------------------------------
PLAN_KEYS = [
    ((), ["string", "list", "null", "number"]),
    (("metadata",), ["string", "list", "null", "number", "missing"]),
    (("metadata", "gantool.resolution"), ["list", "null", "number", "object"]),
    (("profile",), ["string", "list", "null", "number"]),
    (("profile", "z"), ["string", "list", "null", "number"]),
    (("profile", "z", "max"), ["string", "null", "number", "object"]),
    (("profile", "z", "max", 0), ["string", "null", "negative", "nan"]),
]
PLAN_CASES = [(path, kind) for path, kinds in PLAN_KEYS for kind in kinds]


def plan_beside(folder: Path, path: tuple, kind: str) -> None:
    """A plan and its sidecar in ``folder`` (as deploy/build_engine.sh leaves them), the
    sidecar's value at ``path`` replaced by one of the ``kind`` (an index: a list's item)."""
    (folder / "model.plan").write_bytes(b"a plan as trtexec writes it")
    good = {"metadata": json.loads((folder / "export.json").read_text())["metadata"],
            "profile": {"z": {"min": [1, 100], "opt": [8, 100], "max": [64, 100]}}}
    value = ... if kind == "missing" else WRONG[kind]
    if path[-1:] == (0,):
        good["profile"]["z"]["max"][0] = value
    else:
        good = edited(good, path, value)
    (folder / "model.plan.json").write_text(json.dumps(good))


@pytest.mark.parametrize("path,kind", PLAN_CASES,
                         ids=[f"{'.'.join(map(str, p)) or 'top'}={k}" for p, k in PLAN_CASES])
def test_plan_sidecar_values_of_the_wrong_kind_are_one_line(export, tmp_path, capsys, path,
                                                            kind):
    """``info model.plan`` reads the sidecar as the TensorRT backend does (which needs a GPU
    before it gets there)."""
    folder = copy_export(export, tmp_path)
    plan_beside(folder, path, kind)
    said = f"{folder / 'model.plan.json'}: key {path[0]}" if path else \
        f"{folder / 'model.plan.json'} holds"
    one_error(capsys, cli("info", folder / "model.plan"), said)


@pytest.mark.parametrize("path,kind", [(("metadata",), "string"), (("profile", "z"), "list")])
def test_a_plan_whose_sidecar_is_damaged_is_not_kept_by_a_re_export(export, tiny_ckpt, tmp_path,
                                                                     capsys, path, kind):
    folder = copy_export(export, tmp_path)
    plan_beside(folder, path, kind)
    assert cli("export", tiny_ckpt, "--out", folder) == 0
    assert "kept model.plan" not in capsys.readouterr().err
    assert not (folder / "model.plan").exists() and not (folder / "model.plan.json").exists()


# ---- ONNX metadata -------------------------------------------------------------------------
METADATA = [("nz", "abc"), ("nz", "-5"), ("nz", "0"), ("nz", "1.5"), ("nz", ""),
            ("resolution", "0"), ("resolution", "[28]"), ("channels", "-1"),
            ("prior", "abc"), ("prior", ""), ("truncation", "nan"), ("truncation", "-1"),
            ("truncation", "abc"), ("truncation", "inf"), ("output", "png"),
            ("train_step", "-4"), ("train_step", "x"), ("classes", "5"), ("classes", "[1, 2]"),
            ("classes", "{"), ("nz", None), ("prior", None)]


@pytest.fixture(scope="module")
def onnx_model(export):
    onnx = pytest.importorskip("onnx")
    return onnx, onnx.load(str(export / "model.onnx"))


@pytest.mark.parametrize("key,value", METADATA, ids=[f"{k}={v}" for k, v in METADATA])
def test_onnx_metadata_of_the_wrong_kind_is_one_line(onnx_model, tmp_path, capsys, key, value):
    onnx, clean = onnx_model
    model = onnx.ModelProto()
    model.CopyFrom(clean)
    props = {p.key: p.value for p in model.metadata_props}
    props.pop(f"gantool.{key}")
    if value is not None:
        props[f"gantool.{key}"] = value
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(tmp_path / "model.onnx"))  # a bare model: no export.json to differ
    said = f"gantool.{key} is {'missing' if value is None else repr(value)}"
    if key == "truncation" and value in ("nan", "-1", "inf"):
        said = "gantool.truncation: truncation must be a positive number"
    for args in (["info", tmp_path / "model.onnx"],
                 ["generate", tmp_path / "model.onnx", "--backend", "onnx", "--seeds", "0",
                  "--grid", tmp_path / "g.png"]):
        one_error(capsys, cli(*args), f"{tmp_path / 'model.onnx'} (an ONNX model): {said}")


# ---- a run's records: lenient readers ------------------------------------------------------
@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """The tiny run's records (not its checkpoints), for the report."""
    run_dir = tmp_path / tiny_run[0].name
    shutil.copytree(tiny_run[0], run_dir, ignore=shutil.ignore_patterns("checkpoints"))
    return run_dir


@pytest.mark.parametrize("name", ["config.json", "session.json"])
@pytest.mark.parametrize("text", [b"[1]", b'"abc"', b"null", b"5", b"{", b"\xff\xfe{",
                                  b'{"train": "x", "model": ["x"], "device": {"a": 1}}',
                                  b'{"train": {"device": null}, "model": {"classes": "ab"}}'],
                         ids=["list", "string", "null", "number", "not json", "not utf-8",
                              "sections wrong", "values wrong"])
def test_report_draws_a_run_whose_config_or_session_record_is_damaged(run_copy, capsys, name,
                                                                       text):
    """config.json and session.json add facts to the page; damaged, the page goes without
    (without session.json, the configured device comes from config.json)."""
    if name == "config.json":
        (run_copy / "session.json").unlink()
    (run_copy / name).write_bytes(text)
    assert cli("report", run_copy) == 0, capsys.readouterr().err
    page = (run_copy / "report" / "index.html").read_text()
    assert "step 12 (epoch 0.03), as last logged; no checkpoint yet" in page  # none copied
    assert ("(config.json is missing or damaged)" in page) == (name == "config.json"
                                                               and not text.startswith(b"{\""))


HOSTILE_ROWS = [b'{"step": 1, "event": ["rollback"]}', b'{"step": 1, "event": {"a": 1}}',
                b'{"step": 1, "event": 5}', b'{"step": -1, "loss_d": 1.0}',
                b'{"step": 1.5, "loss_d": 1.0}', b'{"step": true}', b'{"step": null}',
                b'{"step": 1, "loss_d": 1' + b"0" * 400 + b"}", b'{"step": 1' + b"0" * 30 + b"}",
                b'{"step": 1, "loss_d": "1.0"}', b'{"step": 1, "loss_d": [1]}',
                b'{"step": 1, "loss_d": null}', b'{"step": 1, "loss_d": {"a": 1}}',
                b'{"step": 1, "event": "rollback", "at_step": -2, "reason": "x", "lr_scale": 1}',
                b'{"step": 1, "event": "stop", "at_step": 2, "reason": 5, "lr_scale": 1}',
                b'{"step": 1, "event": "stop", "at_step": 2, "reason": "x", "lr_scale": "1"}',
                b'{"step": 1, "loss_d": 1' + b"0" * 5000 + b"}", b"[" * 100000, b'["a"]',
                b'"abc"', b"7"]


@pytest.mark.slow  # each on its own; test_report_over_every_damaged_row has them all at once
@pytest.mark.parametrize("row", HOSTILE_ROWS, ids=[r[:40].decode() for r in HOSTILE_ROWS])
def test_a_metrics_row_of_the_wrong_kind_is_skipped_and_counted(run_copy, row):
    """The one reader of metrics.jsonl (the report's and a resume's) drops the row, counts it."""
    from gantool.report import read_metrics

    before = read_metrics(run_copy)
    metrics = run_copy / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + row + b"\n")
    rows, events, bad = read_metrics(run_copy)
    assert (rows, events, bad) == (before[0], before[1], before[2] + 1)


def test_report_over_every_damaged_row(run_copy, capsys):
    """Drawn past them all, with one line saying how many were skipped; eval
    rows scoring different metrics, or none, are no damage."""
    metrics = run_copy / "metrics.jsonl"
    evals = [b'{"step": 4, "event": "eval", "fid": 30.5}', b'{"step": 8, "event": "eval", '
             b'"kid": 0.1}', b'{"step": 12, "event": "eval"}']
    metrics.write_bytes(metrics.read_bytes() + b"\n".join(evals + HOSTILE_ROWS) + b"\n")
    assert cli("report", run_copy) == 0
    assert f"skipped {len(HOSTILE_ROWS)} damaged line(s)" in capsys.readouterr().err
    assert "best FID 30.5 at step 4" in (run_copy / "report" / "index.html").read_text()


def test_resume_drops_every_damaged_row(tiny_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    metrics = run_dir / "metrics.jsonl"
    kept = metrics.read_bytes()
    metrics.write_bytes(kept + b"\n".join(HOSTILE_ROWS) + b"\n")
    assert cli("train", "--resume", run_dir, "--steps", "13", "--no-progress") == 0
    said = f"{metrics}: dropped {len(HOSTILE_ROWS)} damaged line(s) it could not read\n"
    assert said in capsys.readouterr().err  # on one line, however long the path
    assert metrics.read_bytes().startswith(kept)


# ---- other records read back ---------------------------------------------------------------
@pytest.mark.parametrize("text,said", [
    (b"[1]", "holds a list, not an object"),
    (b'{"rows": "x"}', "key rows is a string"),
    (b'{"rows": [5]}', "key rows[0] is a number (5), not an object"),
    (b'{"rows": [{"backend": "torch", "resolution": "28", "batch": 1}]}',
     "key rows[0]['resolution'] is a string (\"28\")"),
    (b'{"rows": [{"backend": null, "resolution": 28, "batch": 1}]}',
     "key rows[0]['backend'] is null, not a string"),
    (b'{"rows": [{"backend": "torch", "resolution": 28, "batch": -1}]}',
     "key rows[0]['batch'] is a number (-1), not a whole number >= 0"),
    (b'{"rows": [{"backend": "torch", "resolution": 28, "batch": 1, "images_per_s": NaN}]}',
     "key rows[0]['images_per_s'] is a number (NaN), not a finite number"),
    (b'{"rows": [{"backend": "torch", "resolution": 28}]}', "key rows[0]['batch'] is missing"),
    (b"\xff", "is not valid JSON"),
])
def test_a_bench_baseline_of_the_wrong_kind_is_one_line(tmp_path, capsys, text, said):
    (tmp_path / "base.json").write_bytes(text)
    one_error(capsys, cli("bench", "--compare", tmp_path / "base.json"),
              f"--compare: cannot read it as bench JSON: {tmp_path / 'base.json'}", said)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    (tmp_path / "c.json").write_bytes(b'\xff{"train": {}}')
    one_error(capsys, cli("train", "--config", tmp_path / "c.json", "--out", tmp_path / "runs"),
              f"cannot parse config file {tmp_path / 'c.json'}")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text", [b"[" * 100000, b"[1]", b"{", b"\xff"],
                         ids=["nested 100,000 deep", "a list", "not json", "not utf-8"])
def test_a_damaged_shard_record_is_a_folder_that_differs(tiny_ckpt, tmp_path, capsys, text):
    """shard.json (fileio.claim_folder's record of what a folder is cut from), damaged: the
    folder is refused in one line, as one cut from other seeds."""
    shard = tmp_path / "out" / "shard-00001-of-00002"  # --shard 1/2: seeds 2-3
    shard.mkdir(parents=True)
    (shard / "shard.json").write_bytes(text)
    code = cli("generate", tiny_ckpt, "--seeds", "0-3", "--out", tmp_path / "out", "--shard",
               "1/2", "--no-progress")
    one_error(capsys, code, str(shard))
    assert (shard / "shard.json").read_bytes() == text
