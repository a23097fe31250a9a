"""Export for real: ONNX (float32, FP16) through ONNX Runtime against PyTorch; TensorRT where
present. Checkpoints are real files of gantool's format, written by save_checkpoint."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from gantool.cli.main import user_message
from gantool.config import ModelConfig, RunConfig
from gantool.errors import GantoolError
from gantool.export import FORMATS, parse_formats
from gantool.export.pipeline import export_checkpoint
from gantool.latent import latents
from gantool.model_info import read_onnx_metadata
from gantool.models import build_generator
from gantool.models.checkpoint import record
from gantool.sampling.images import to_uint8
from gantool.train.run_files import save_checkpoint

from conftest import gantool_cli

pytestmark = pytest.mark.slow  # the whole module: make test-fast skips it

ONNX = [FORMATS["onnx"]]


def make_checkpoint(tmp_path, overflow: float = 1.0, **model):
    """A checkpoint holding a freshly initialised generator (BatchNorm stats made non-trivial).

    ``overflow`` scales the first block's output by that factor and the next convolution's
    weights by its inverse: the same function, with activations in between that may leave
    fp16's range."""
    cfg = RunConfig(model=ModelConfig(**{"nz": 16, "ngf": 4, "max_channels": 16, **model}))
    torch.manual_seed(0)
    g = build_generator(cfg.model)
    g.train()
    with torch.no_grad():
        for _ in range(3):  # give BatchNorm running statistics something real
            g(torch.randn(8, cfg.model.nz))
        if overflow != 1.0:
            bn = next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.weight.mul_(overflow)
            bn.bias.mul_(overflow)
            second = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)][1]
            second.weight.div_(overflow)
    state = record(config=cfg.to_dict(), step=7, G=g.state_dict(), G_ema=None)
    return save_checkpoint(state, tmp_path / "ckpt", keep=1), g.eval(), cfg


@pytest.mark.parametrize("res,arch", [(28, "dcgan"), (64, "dcgan"), (256, "dcgan"),
                                      (1024, "dcgan"), (96, "residual"), (64, "fastgan"),
                                      (1024, "fastgan")])
@pytest.mark.parametrize("output", ["uint8", "float"])
def test_onnx_matches_torch_with_a_dynamic_batch(tmp_path, res, arch, output):
    ckpt, g, cfg = make_checkpoint(tmp_path, resolution=res, channels=3 if res > 28 else 1,
                                   arch=arch)
    result = export_checkpoint(ckpt, tmp_path / "out", ONNX, output=output, log=lambda s: None)
    assert [p.name for p in result.files] == ["model.onnx"] and result.checks[0].ok
    path = tmp_path / "out" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seeds in ([3], [0, 1, 2, 5, 9]):  # two batch sizes through one model
        z = latents(seeds, 16, "normal", None)
        got = session.run(None, {"z": z})[0]
        with torch.no_grad():
            ref = g(torch.from_numpy(z)).numpy()
        if output == "float":
            assert got.shape == ref.shape and got.dtype == np.float32
            assert np.abs(got - ref).max() <= 1e-4
        else:
            assert got.shape == (len(seeds), res, res, cfg.model.channels)
            assert got.dtype == np.uint8
            diff = np.abs(got.astype(int) - to_uint8(ref).astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    meta = read_onnx_metadata(path).as_dict()
    assert (meta["resolution"], meta["channels"], meta["nz"], meta["prior"]) == (
        res, cfg.model.channels, 16, "normal")
    assert meta["truncation"] is None and meta["output"] == output and meta["train_step"] == 7
    assert len(meta["config_sha256"]) == 64
    model = onnx.load(str(path))
    assert not any("stack_trace" in p.key for n in model.graph.node for p in n.metadata_props)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch


def test_fp16_model_rounds_weights_and_keeps_io_types(tmp_path):
    ckpt, g, _ = make_checkpoint(tmp_path, resolution=64, prior="uniform", truncation=0.5)
    result = export_checkpoint(ckpt, tmp_path / "out", ONNX, fp16=True, log=lambda s: None)
    assert [p.name for p in result.files] == ["model.onnx", "model_fp16.onnx"]
    fp16_check = result.checks[1]
    assert fp16_check.precision == "fp16" and fp16_check.psnr_db >= 40
    m32 = onnx.load(str(tmp_path / "out" / "model.onnx"))
    m16 = onnx.load(str(tmp_path / "out" / "model_fp16.onnx"))
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    w32 = {i.name: onnx.numpy_helper.to_array(i) for i in m32.graph.initializer}
    halves = [i for i in m16.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) >= 4  # every conv weight
    for init in halves:
        if init.name in w32 and w32[init.name].size > 1:
            assert np.array_equal(onnx.numpy_helper.to_array(init),
                                  w32[init.name].astype(np.float16))
    assert read_onnx_metadata(tmp_path / "out" / "model_fp16.onnx").truncation == 0.5


def test_fp16_overflow_names_the_node_and_keep_fp32_fixes_it(tmp_path):
    ckpt, g, _ = make_checkpoint(tmp_path, resolution=32, overflow=1e6)
    with torch.no_grad():  # the same function as without the scaling: only the range changed
        z = torch.from_numpy(latents(range(4), 16, "normal", None))
        plain = make_checkpoint(tmp_path / "plain", resolution=32)[1]
        assert torch.allclose(g(z), plain(z), atol=1e-4)
    out = tmp_path / "out"
    with pytest.raises(GantoolError) as e:
        export_checkpoint(ckpt, out, ONNX, fp16=True, log=lambda s: None)
    message = user_message(e.value, "export")  # as gantool export says it
    assert "model_fp16.onnx failed verification" in message and "past fp16's 65504" in message
    assert not out.exists()  # the folder changes as a whole: a failed export leaves nothing
    nodes = re.search(r"--keep-fp32 (\S+)", message).group(1).rstrip(")").split(",")
    assert nodes and all(n.startswith("node_") for n in nodes)
    result = export_checkpoint(ckpt, out, ONNX, fp16=True, keep_fp32=nodes, log=lambda s: None)
    assert result.checks[1].ok and (out / "model_fp16.onnx").exists()


def test_cli_export_info_and_onnx_generate_match_torch(tiny_ckpt, tmp_path):
    out = tmp_path / "export"
    r = gantool_cli("export", tiny_ckpt, "--out", out, "--fp16")
    assert r.returncode == 0, r.stderr
    assert "model.onnx (fp32, 8 images)" in r.stderr and ": ok" in r.stderr
    summary = json.loads((out / "export.json").read_text())
    assert summary["files"] == ["model.onnx", "model_fp16.onnx"]
    assert all(c["problems"] == [] for c in summary["checks"])
    info = gantool_cli("info", out / "model.onnx")
    assert info.returncode == 0 and "image uint8 [batch, 28, 28, 1]" in info.stdout
    assert "resolution" in gantool_cli("info", tiny_ckpt).stdout
    images = {}
    for backend, source in [("torch", tiny_ckpt), ("onnx", out), ("onnx-fp16", out)]:
        extra = ["--fp16"] if backend == "onnx-fp16" else []
        r = gantool_cli("generate", source, "--backend", backend.split("-")[0], *extra,
                        "--seeds", "0-5", "--out", tmp_path / backend, "--no-progress")
        assert r.returncode == 0, r.stderr
        images[backend] = np.stack([np.asarray(Image.open(p))
                                    for p in sorted((tmp_path / backend).glob("*.png"))])
    assert np.abs(images["onnx"].astype(int) - images["torch"].astype(int)).max() <= 1
    assert np.abs(images["onnx-fp16"].astype(int) - images["torch"].astype(int)).max() <= 8
    # the deployment-side engine build reads the same folder (dry run: no docker here)
    script = Path(__file__).parents[1] / "deploy" / "build_engine.sh"
    r = subprocess.run(["bash", script, out, "25.01", "1,4,16"], capture_output=True, text=True,
                       env={**os.environ, "DRY_RUN": "1"})
    assert r.returncode == 0, r.stderr
    for part in ("nvcr.io/nvidia/tensorrt:25.01-py3", "--onnx=/w/model_fp16.onnx",
                 "--stronglyTyped", "--minShapes=z:1x100", "--maxShapes=z:16x100"):
        assert part in r.stdout


@pytest.mark.parametrize("args,message", [
    (["--formats", "onxx"], "did you mean 'onnx'"),
    (["--formats", "onnx", "--batch-profile", "8,1,64"], "1 <= min <= opt <= max"),
    (["--formats", "onnx", "--batch-profile", "8"], "min,opt,max"),
    (["--formats", "onnx", "--output", "png"], "'png' is not one of 'uint8', 'float'"),
    (["--formats", "onnx", "--triton-variant", "gpu"],
     "--triton-variant: only the triton format takes it: add that format, e.g. onnx,triton "
     "(see --formats)"),
    (["--formats", "onnx", "--workspace-gb", "8"],
     "--workspace-gb: only the engine format takes it"),
    (["--formats", "engine"], "TensorRT"),
])
def test_cli_export_errors_are_one_line(tiny_ckpt, tmp_path, args, message):
    if "engine" in args and _tensorrt_ready():
        pytest.skip("TensorRT and a GPU are present here")
    r = gantool_cli("export", tiny_ckpt, "--out", tmp_path / "o", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and message in line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_info_and_generate_reject_what_they_cannot_read(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    r = gantool_cli("info", tmp_path / "x.onnx")
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = gantool_cli("generate", tmp_path, "--backend", "onnx", "--grid", tmp_path / "g.png")
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.parametrize("model,says", [
    ({}, "none (the full prior)"),
    ({"prior": "uniform", "truncation": 0.5}, "0.5 by default (|z| at most 0.5)"),
])
def test_info_says_what_the_default_truncation_means(tmp_path, capsys, model, says):
    """No default truncation is the plain prior, not Python's None; a checkpoint and its export
    folder say it alike."""
    from gantool.cli.main import main

    ckpt, _, _ = make_checkpoint(tmp_path, **model)
    export_checkpoint(ckpt, tmp_path / "export", ONNX, log=lambda s: None)
    for path in (ckpt, tmp_path / "export"):
        with pytest.raises(SystemExit) as exit_:
            main(["info", str(path)])
        out = capsys.readouterr().out
        assert exit_.value.code == 0
        line = next(x for x in out.splitlines() if x.startswith("truncation "))
        assert line.split(None, 1)[1] == says, (path, out)
        assert "None" not in out, out


@pytest.mark.slow
def test_a_changed_export_file_is_named_before_it_draws(tiny_ckpt, tmp_path):
    """export.json records each file's size and SHA-256: a bit flip inside a weight (which
    ONNX Runtime would run, drawing other images) is refused by the backend and by
    info --verify; a damaged graph or metadata that disagrees with it are one line too."""
    out = tmp_path / "export"
    assert gantool_cli("export", tiny_ckpt, "--out", out, "--fp16").returncode == 0
    r = gantool_cli("info", out, "--verify")
    assert r.returncode == 0 and "verified: model.onnx, model_fp16.onnx match" in r.stdout
    model = onnx.load(str(out / "model.onnx"))
    raw = max((t.raw_data for t in model.graph.initializer), key=len)
    data = bytearray((out / "model.onnx").read_bytes())
    at = data.find(raw) + len(raw) // 2
    data[at] ^= 0x10  # one bit of one weight: still a valid model
    (out / "model.onnx").write_bytes(data)
    for args in (["info", out, "--verify"],
                 ["generate", out, "--backend", "onnx", "--seeds", "0-1", "--out",
                  tmp_path / "g", "--no-progress"]):
        r = gantool_cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert re.fullmatch(r"error: .*model\.onnx is not the file gantool export wrote .*\n",
                            r.stderr), r.stderr
    alone = tmp_path / "alone"  # files without their export.json
    alone.mkdir()
    clean = onnx.load(str(out / "model_fp16.onnx"))
    broken = clean.SerializeToString().replace(b"ConvTranspose", b"ConvTranspoze")
    (alone / "model.onnx").write_bytes(broken)
    r = gantool_cli("generate", alone, "--backend", "onnx", "--seeds", "0", "--grid",
                    tmp_path / "a.png")
    assert r.returncode == 2 and "ONNX Runtime cannot load" in r.stderr, r.stderr
    for p in clean.metadata_props:
        if p.key == "gantool.nz":
            p.value = "7"
    onnx.save(clean, str(alone / "model.onnx"))
    r = gantool_cli("generate", alone, "--backend", "onnx", "--seeds", "0", "--grid",
                    tmp_path / "a.png")
    assert r.returncode == 2 and "its metadata says nz 7 but its graph takes 100" in r.stderr
    assert not (tmp_path / "a.png").exists()


def test_a_full_disk_during_export_names_the_folder_and_leaves_nothing(tiny_ckpt, small_disk):
    disk = small_disk("128k")
    r = gantool_cli("export", tiny_ckpt, "--out", disk / "e")  # a 0.3 MB model.onnx
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"error: cannot write {disk / 'e'}: No space "
                                                 "left on device")
    assert list(disk.iterdir()) == []


def test_parse_formats():
    assert [f.name for f in parse_formats("onnx, engine,onnx")] == ["onnx", "engine"]
    with pytest.raises(GantoolError, match="did you mean 'engine'"):
        parse_formats("engin")


def _tensorrt_ready() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _tensorrt_ready(), reason="TensorRT and an NVIDIA GPU are needed to "
                    "build engines; neither can be installed on the CPU machines this suite "
                    "runs on (TensorRT's libraries come from NVIDIA's own index)")
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_engine_matches_torch(tmp_path, fp16):
    ckpt, _, _ = make_checkpoint(tmp_path, resolution=64)
    result = export_checkpoint(ckpt, tmp_path / "out", parse_formats("onnx,engine"), fp16=fp16,
                               batch=(1, 4, 8), log=lambda s: None)
    assert (tmp_path / "out" / "model.plan").exists() and all(c.ok for c in result.checks)
    sidecar = json.loads((tmp_path / "out" / "model.plan.json").read_text())
    assert sidecar["profile"]["z"]["max"] == [8, 16]
    assert ("Half" in sidecar["layer_precisions"]) == fp16 or not fp16


def _forge(ckpt, path, change):
    import torch

    state = torch.load(ckpt, weights_only=True)
    change(state)
    torch.save(state, path)
    return path


def _narrow(weights):
    return {k: v[..., :1] if v.ndim > 1 else v for k, v in weights.items()}


@pytest.mark.parametrize("name,change,message", [
    ("noconfig", lambda s: s.pop("config"), "'config' entry is missing"),
    ("badconfig", lambda s: s.update(config={"model": {"resolution": "x"}}),
     "its configuration is invalid"),
    ("shapes", lambda s: s.update(G=_narrow(s["G"]), G_ema=_narrow(s["G_ema"] or s["G"])),
     "size mismatch for"),
    ("keys", lambda s: s.update(G_ema={"x": s["G"]["main.0.weight"]}), "Missing key(s)"),
    ("types", lambda s: s.update(G=[1, 2]), "'G' entry is missing or malformed"),
])
def test_forged_checkpoints_are_one_line_errors(tiny_ckpt, tmp_path, capsys, name, change,
                                                message):
    """info vouches for a checkpoint only when both weight sets fit its configuration."""
    from gantool.cli.main import main

    path = _forge(tiny_ckpt, tmp_path / f"{name}.pt", change)
    for args in (["info", path], ["generate", path, "--grid", tmp_path / "g.png"],
                 ["export", path, "--out", tmp_path / "e"]):
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err.strip().splitlines()[-1], (args, err)
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "e").exists()


def test_resume_from_a_forged_checkpoint_is_one_line(tiny_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    newest = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
    _forge(newest, newest, lambda s: s.update(D={"x": s["G"]["main.0.weight"]}))
    r = gantool_cli("train", "--resume", run_dir, "--steps", "20", "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "does not fit the run" in r.stderr.strip().splitlines()[-1]


def _step_of_export(folder):
    from gantool.model_info import read_onnx_metadata

    return read_onnx_metadata(folder / "model.onnx").train_step


def test_an_export_killed_anywhere_leaves_one_export_or_a_refused_folder(tiny_run, tmp_path):
    """Re-exporting step 12 over step 8's export and back, killed at random moments: the folder
    holds step 8's export, or step 12's, whole (the files export.json lists and no others), or is
    marked unfinished and refused. A re-export without --fp16 drops the old FP16 model."""
    import random
    import signal

    ckpts = tiny_run[0] / "checkpoints"
    out = tmp_path / "export"
    start = time.perf_counter()
    assert gantool_cli("export", ckpts / "step-0000008.pt", "--out", out, "--fp16",
                       "--formats", "onnx,triton").returncode == 0
    took = time.perf_counter() - start  # kills land from early on to past the end
    rng = random.Random(0)
    outcomes = []
    step = 8
    for _ in range(4):  # each time the other checkpoint over the export there
        other = ckpts / f"step-{20 - step:07d}.pt"
        proc = subprocess.Popen([sys.executable, "-m", "gantool", "export", other, "--out",
                                 out, "--fp16", "--formats", "onnx,triton"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.2) * took)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (out / ".export-unfinished").exists():
            r = gantool_cli("info", out)
            assert r.returncode == 2 and "interrupted export" in r.stderr
            outcomes.append("refused")
            assert gantool_cli("export", other, "--out", out, "--fp16", "--formats",
                               "onnx,triton").returncode == 0
            step = 20 - step
            continue
        listed = json.loads((out / "export.json").read_text())
        present = {p.name for p in out.iterdir() if not p.name.startswith(".")}
        assert present == set(listed["files"]) | {"export.json"}, (present, listed["files"])
        step = _step_of_export(out)
        assert str(step) == listed["metadata"]["gantool.train_step"] and step in (8, 12)
        outcomes.append(step)
    print("outcomes", outcomes)
    r = gantool_cli("export", ckpts / "step-0000012.pt", "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]
    assert _step_of_export(out) == 12


def test_a_folder_marked_unfinished_is_refused_by_every_reader(tiny_ckpt, tmp_path):
    out = tmp_path / "export"
    r = gantool_cli("export", tiny_ckpt, "--out", out, "--formats", "onnx,triton")
    assert r.returncode == 0
    (out / ".export-unfinished").write_text("")
    for args in (["info", out], ["info", out / "model.onnx"],
                 ["generate", out, "--backend", "onnx", "--grid", tmp_path / "g.png"],
                 ["serve", out / "model_repository"]):
        r = gantool_cli(*args, timeout=120)
        assert r.returncode == 2 and "interrupted export" in r.stderr, (args, r.stderr)


def test_formats_build_in_the_tables_order_and_every_row_resolves():
    from gantool.export import build_order

    for text in ("triton,engine", "engine,triton", "triton", "engine,onnx"):
        names = [f.name for f in build_order(parse_formats(text))]
        assert names == [n for n in FORMATS if n in names] and names[0] == "onnx", text
    assert [f.name for f in build_order(parse_formats("triton"))] == ["onnx", "triton"]
    for row in FORMATS.values():
        assert callable(row.builder) and (row.check is None or callable(row.check)), row.name


def test_the_triton_python_models_read_the_names_the_repository_writes():
    """The python models Triton runs cannot import gantool: the names they read are spelt in
    them too, each with a comment naming the constant it mirrors, and agree with the writer."""
    from gantool.artifacts import ONNX
    from gantool.export import triton

    generator = (triton.TEMPLATES / "generator_model.py").read_text()
    latent = (triton.TEMPLATES / "latent_model.py").read_text()
    assert f'params["{triton.ONNX_FILE_PARAMETER}"]' in generator
    assert "gantool.export.triton.ONNX_FILE_PARAMETER" in generator
    assert f"from {Path(triton.LATENT_COPY).stem} import" in latent
    assert "gantool.export.triton.LATENT_COPY" in latent
    config = triton.generator_config("python", 16, [8, 8, 1], (1, 2, 4))
    assert config["parameters"][triton.ONNX_FILE_PARAMETER] == {"string_value": ONNX}


def test_a_plan_built_beside_the_export_is_kept_for_the_same_model(tiny_ckpt, tmp_path):
    """deploy/build_engine.sh writes model.plan into an export folder on the serving machine;
    exporting the Triton repository again keeps it when it was built from this same model for
    these batches (the gpu repository then serves it), and drops it otherwise."""
    out = tmp_path / "export"
    args = ["export", tiny_ckpt, "--out", out, "--formats", "onnx,triton", "--triton-variant",
            "gpu", "--batch-profile", "1,8,64"]
    assert gantool_cli(*args).returncode == 0
    summary = json.loads((out / "export.json").read_text())
    plan = b"a plan as trtexec writes it"  # bytes Triton would load; nothing here reads them
    (out / "model.plan").write_bytes(plan)
    (out / "model.plan.json").write_text(json.dumps({
        "built_by": "deploy/build_engine.sh", "metadata": summary["metadata"],
        "profile": {"z": {"min": [1, 16], "opt": [8, 16], "max": [64, 16]}}}))
    r = gantool_cli(*args)
    assert r.returncode == 0 and "kept model.plan" in r.stderr, r.stderr
    assert (out / "model.plan").read_bytes() == plan
    generator = (out / "model_repository" / "generator" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in generator
    assert "model.plan" in json.loads((out / "export.json").read_text())["hashes"]
    r = gantool_cli(*args[:-1], "1,8,32")  # other batches: the plan does not fit them
    assert r.returncode == 0 and "kept" not in r.stderr
    assert not (out / "model.plan").exists()
    assert 'platform: "onnxruntime_onnx"' in (
        out / "model_repository" / "generator" / "config.pbtxt").read_text()
