"""gantool's 64 px DCGAN is the canonical pytorch/examples DCGAN, and the speed benchmark runs.

The canonical nets live in ``benchmarks/canonical_dcgan.py`` (not a package): imported here from
its file path.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from gantool.config import ModelConfig
from gantool.models import build_discriminator, build_generator

pytestmark = pytest.mark.slow  # the whole module: make test-fast skips it

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_canonical():
    spec = importlib.util.spec_from_file_location("canonical_dcgan", BENCH / "canonical_dcgan.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("canonical_dcgan", module)
    spec.loader.exec_module(module)
    return module


canonical = _load_canonical()
CFG = ModelConfig(resolution=64, channels=3, nz=100, ngf=64, ndf=64)

# pytorch/examples dcgan/main.py at nz=100, ngf=ndf=64, nc=3, written out by hand.
EXAMPLE_G_WEIGHTS = [(100, 512, 4, 4), (512, 256, 4, 4), (256, 128, 4, 4), (128, 64, 4, 4),
                     (64, 3, 4, 4)]
EXAMPLE_D_WEIGHTS = [(64, 3, 4, 4), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4),
                     (1, 512, 4, 4)]


def _shapes(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(kind of owning layer, shape) of every parameter, in registration order."""
    return [(type(m).__name__, tuple(p.shape))
            for m in net.modules() for p in m.parameters(recurse=False)]


def _layer_types(net: nn.Module) -> list[str]:
    return [type(m).__name__ for m in net.modules() if not list(m.children())]


def _conv_specs(net: nn.Module) -> list[tuple]:
    return [(type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride,
             m.padding, m.bias is None)
            for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_canonical_nets_match_the_example():
    g, d = canonical.build_generator(), canonical.build_discriminator()
    conv_g = [s for kind, s in _shapes(g) if kind == "ConvTranspose2d"]
    conv_d = [s for kind, s in _shapes(d) if kind == "Conv2d"]
    assert conv_g == EXAMPLE_G_WEIGHTS
    assert conv_d == EXAMPLE_D_WEIGHTS
    assert _layer_types(g) == (["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 4
                               + ["ConvTranspose2d", "Tanh"])
    assert _layer_types(d) == (["Conv2d", "LeakyReLU"]
                               + ["Conv2d", "BatchNorm2d", "LeakyReLU"] * 3
                               + ["Conv2d", "Sigmoid"])
    assert all(no_bias for *_, no_bias in _conv_specs(g) + _conv_specs(d))


def test_generator_is_the_canonical_generator():
    ours, ref = build_generator(CFG), canonical.build_generator(nz=100, ngf=64, nc=3)
    assert _shapes(ours) == _shapes(ref)
    assert _layer_types(ours) == _layer_types(ref)
    assert _conv_specs(ours) == _conv_specs(ref)
    assert _n_params(ours) == _n_params(ref) == 3_576_704


def test_discriminator_is_the_canonical_one_but_returns_logits():
    ours, ref = build_discriminator(CFG), canonical.build_discriminator(ndf=64, nc=3)
    assert _shapes(ours) == _shapes(ref)
    assert _conv_specs(ours) == _conv_specs(ref)
    assert _n_params(ours) == _n_params(ref) == 2_765_568
    # The only difference: no final Sigmoid (gantool's BCE works on logits).
    ref_types = _layer_types(ref)
    assert ref_types[-1] == "Sigmoid"
    assert _layer_types(ours) == ref_types[:-1]


def test_canonical_step_trains():
    import torch

    torch.manual_seed(0)
    g, d, opt_g, opt_d = canonical.build_all(nz=16, ngf=8, ndf=8, nc=3, resolution=32)
    before = [p.detach().clone() for p in (*g.parameters(), *d.parameters())]
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    logs = canonical.canonical_step(g, d, opt_g, opt_d, real, nz=16)
    assert set(logs) == {"loss_d", "loss_g"}
    assert all(torch.isfinite(v) for v in logs.values())
    after = list((*g.parameters(), *d.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_canonical_module_does_not_import_gantool():
    tree = ast.parse((BENCH / "canonical_dcgan.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] == "gantool"]


def test_benchmark_script_runs_tiny(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "train_step.py"), "--tiny", "--json", str(out)],
        capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio gantool/canonical: median" in proc.stdout
    assert "conservative" in proc.stdout
    result = json.loads(out.read_text())
    assert len(result["runs"]) == 2
    assert set(result["summary"]) >= {"gantool", "canonical", "ratio"}
    for run in result["runs"]:
        for name in ("gantool", "canonical"):
            assert run[name]["s_per_step"] > 0
            assert run[name]["loss_d"] == run[name]["loss_d"]  # finite, not NaN


@pytest.mark.parametrize("script,args,expect", [
    ("generate.py", ["--cases", "32x2", "--ngf", "4", "--repeats", "2", "--warmup", "1",
                     "--calls", "1", "--threads", "1"], "ratio onnx/torch median"),
    ("generate.py", ["--cases", "64x1", "--presets", "colour-small,few-shot", "--repeats", "1",
                     "--warmup", "1", "--calls", "1", "--threads", "1"],
     "few-shot           0.06 G multiply-adds/image; vs colour-small"),
    ("render.py", ["--resolution", "32", "--images", "16", "--batch", "4", "--repeats", "1",
                   "--encoders", "pillow-fast,fpng,npy"], "R / min(G, E x"),
    ("render.py", ["--resolution", "32", "--generator", "torch", "--ngf", "4", "--images", "8",
                   "--batch", "4", "--repeats", "1", "--threads", "1", "--encoders",
                   "pillow-fast"], "R / min(G, E x"),
    ("render.py", ["--resolution", "32", "--images", "16", "--batch", "4", "--repeats", "2",
                   "--layouts", "flat,subdirs,webdataset"], "x flat"),
    ("serving.py", ["--resolution", "32", "--ngf", "4", "--batch", "2", "--clients", "2",
                    "--images", "8", "--warmup", "1", "--repeats", "1"], "ratio triton/onnx"),
    ("serving.py", ["--transport", "--resolution", "32", "--ngf", "4", "--batch", "2",
                    "--clients", "2", "--max-batch", "2", "--images", "8", "--warmup", "1",
                    "--repeats", "1"], "ratio draw-shm/draw-onnx"),
])
def test_inference_benchmarks_run_tiny(tmp_path, script, args, expect):
    """Smoke runs at tiny sizes: the scripts work end to end (no timing is asserted)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expect in proc.stdout and json.loads(out.read_text())
