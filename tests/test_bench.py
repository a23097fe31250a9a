"""`gantool bench`: a real tiny run of several contenders, each in its own process."""

from __future__ import annotations

import json

import pytest
import torch

from gantool.bench import flops_per_image
from gantool.config import ModelConfig
from gantool.models import build_generator

from conftest import gantool_cli

pytestmark = pytest.mark.slow  # the whole module: make test-fast skips it


def test_flops_per_image_matches_a_count_by_hand():
    g = build_generator(ModelConfig(resolution=32, ngf=4, channels=3)).eval()
    expected = 0

    def count(module, inputs, output):
        nonlocal expected
        k = module.kernel_size[0] * module.kernel_size[1]
        h, w = inputs[0].shape[-2:]  # a transposed conv does k*k MACs per input pixel
        expected += 2 * module.in_channels * module.out_channels * k * h * w

    hooks = [m.register_forward_hook(count) for m in g.modules()
             if isinstance(m, torch.nn.ConvTranspose2d)]
    with torch.no_grad():
        g(torch.zeros(1, 100))
    for h in hooks:
        h.remove()
    assert expected > 0 and flops_per_image(g, 100) == pytest.approx(expected, rel=0.01)


def test_bench_runs_contenders_writes_json_and_compares(tmp_path):
    """Every backend once (a Triton server per worker is most of the time), then the repeats
    (medians, every repeat's figure) and the comparison on one of them."""
    out = tmp_path / "bench.json"
    args = ["bench", "--backend", "torch,onnx,triton,trt,torch-fp16-graphs", "--resolution",
            "32", "--ngf", "4", "--batch-sizes", "1,2", "--warmup", "1", "--calls", "2"]
    r = gantool_cli(*args, "--json", out, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = {(row["backend"], row["batch"]): row for row in results["rows"]}
    assert len(rows) == 10
    for name in ("torch", "onnx", "triton"):
        for batch in (1, 2):
            row = rows[(name, batch)]
            assert row["images_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0, row
            assert row["peak_mib"] > 0 and 0 < row["roofline"] < 1, row
            assert row["repeats"] == [round(row["images_per_s"], 2)], row
    if not torch.cuda.is_available():
        assert rows[("trt", 1)]["skipped"] == "needs a CUDA GPU"
        assert rows[("torch-fp16-graphs", 2)]["skipped"] == "needs a CUDA GPU"
    assert results["peak_tflops"]["fp32"] > 0
    assert "roofline" in r.stdout and "skipped: needs a CUDA GPU" in r.stdout

    again = gantool_cli("bench", "--backend", "onnx", "--resolution", "32", "--ngf", "4",
                        "--batch-sizes", "2", "--warmup", "1", "--calls", "2", "--repeats", "2",
                        "--compare", out, "--json", tmp_path / "again.json", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    (row,) = json.loads((tmp_path / "again.json").read_text())["rows"]
    assert len(row["repeats"]) == 2 and min(row["repeats"]) <= row["images_per_s"], row
    assert row["images_per_s"] <= max(row["repeats"]) + 0.01, row
    assert "(repeat 2)" in again.stderr  # the progress lines
    assert row["vs_baseline"] == pytest.approx(
        row["images_per_s"] / rows[("onnx", 2)]["images_per_s"], rel=1e-3)
    assert "vs baseline" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--backend", "onnxx"], "unknown backend 'onnxx' (did you mean 'onnx'?)"),
    (["--batch-sizes", "0,8"], "--batch-sizes expects positive integers"),
    (["missing.pt"], "pass a gantool checkpoint (.pt) that exists"),
    (["--compare", "nope.json"], "cannot read it as bench JSON"),
])
def test_bench_user_errors_are_one_line(tmp_path, args, message):
    r = gantool_cli("bench", *args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bench_without_the_onnx_extra_measures_torch_and_skips_the_rest(tmp_path):
    """An install without the onnx extra (its modules made unimportable for this interpreter
    and its workers): the torch figures arrive, onnx is listed as skipped with the install hint."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['onnxscript'] = None\nsys.modules['onnxruntime'] = None\n")
    r = gantool_cli("bench", "--backend", "torch,onnx", "--resolution", "32", "--ngf", "4",
                    "--batch-sizes", "1", "--warmup", "0", "--calls", "2", "--json",
                    tmp_path / "b.json", env_extra={"PYTHONPATH": str(tmp_path)}, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    rows = {row["backend"]: row for row in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert rows["torch"]["images_per_s"] > 0
    assert rows["onnx"]["skipped"] == "needs the onnx extra: pip install 'gantool[onnx]'"
