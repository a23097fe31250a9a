"""What only a CUDA GPU can check: CUDA-graph replays, fp16/bf16 generation, mixed-precision
training and its resume, several processes per node, and `gantool bench` on the GPU.

Skipped where no CUDA GPU is visible, as on the CPU machines CI runs on; the rest of the suite
also runs on the GPU there (its training uses the device ``auto`` picks).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.console import Console

from gantool.backends import load_backend
from gantool.export.verify import psnr
from gantool.models.checkpoint import load_checkpoint
from gantool.train.loop import run
from gantool.train.trainer import Trainer

from conftest import gantool_cli, tiny_config, torchrun

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU; CI's machines have none")

SEEDS = list(range(8))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_replays_give_the_eager_bytes(tiny_ckpt, precision):
    eager = load_backend("torch", str(tiny_ckpt), device="cuda", precision=precision)
    graphs = load_backend("torch", str(tiny_ckpt), device="cuda", precision=precision,
                          cuda_graphs=True)
    for seeds in (SEEDS, [3, 4, 5], list(range(8, 16))):  # two graphs; the first replayed again
        assert np.array_equal(graphs.generate(seeds, 0.7), eager.generate(seeds, 0.7)), seeds
    assert sorted(graphs._graphs) == [3, 8]


def test_gpu_precisions_stay_close_to_cpu_fp32(tiny_ckpt):
    ref = load_backend("torch", str(tiny_ckpt), device="cpu").generate(SEEDS, None)
    floors = {"fp32": 40.0, "fp16": 30.0, "bf16": 30.0}  # fp32 convolutions run on TF32
    for precision, floor in floors.items():
        got = load_backend("torch", str(tiny_ckpt), device="cuda",
                           precision=precision).generate(SEEDS, None)
        assert got.shape == ref.shape and got.dtype == np.uint8
        assert psnr(got, ref) >= floor, (precision, psnr(got, ref))
    compiled = load_backend("torch", str(tiny_ckpt), device="cuda", precision="fp16",
                            compile=True).generate(SEEDS, None)
    assert psnr(compiled, ref) >= floors["fp16"]


def test_cuda_defaults_are_mixed_precision_and_channels_last():
    trainer = Trainer(tiny_config(**{"train.device": "cuda"}), Console(quiet=True), False)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert trainer.hw.amp_dtype == expected and trainer.hw.channels_last
    conv = trainer.update.G.main[3].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert trainer.real_batch.images.device.type == "cuda", "a small dataset lives on the GPU"
    assert trainer.update.opt_G.defaults["fused"] and trainer.update.opt_D.defaults["fused"]


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[net][k].float() - b[net][k].float()).abs().max())
               for net in ("G", "D", "G_ema") for k in a[net] if a[net][k].is_floating_point())


@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_mixed_precision_training_resumes(tmp_path, amp):
    """6 steps straight vs 3 + resume to 6, on the GPU: finite losses, the scaler's state and
    the CUDA RNG in the checkpoint, and the same weights (cuDNN's backward kernels may add in
    another order from run to run, so to float tolerance rather than bit for bit)."""
    over = {"train.device": "cuda", "train.amp": amp, "train.checkpoint_every": 3}
    straight = run(tiny_config(**over, **{"train.steps": 6}), out=tmp_path / "a", progress=False)
    first = run(tiny_config(**over, **{"train.steps": 3}), out=tmp_path / "b", progress=False)
    resumed = run(resume=first.run_dir, steps=6, progress=False)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert b["step"] == 6 and b["rng"]["cuda"]
    assert ("scale" in b["scaler"]) == (amp == "fp16"), "GradScaler only for fp16"
    assert _max_difference(a, b) <= 1e-3
    rows = [json.loads(x) for x in (first.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss_d"] for r in rows if "loss_d" in r] + [r["loss_g"] for r in rows
                                                             if "loss_g" in r]
    assert losses and all(np.isfinite(losses))


def test_graphed_training_computes_what_eager_training_does(tmp_path):
    """train.cuda_graphs: the same weights as eager steps (with an eager extra update between
    replays, a decaying learning rate, and a resume that captures again)."""
    over = {"train.device": "cuda", "train.checkpoint_every": 3, "train.extra_update_every": 4,
            "train.lr_gamma": 0.5, "train.lr_gamma_every": 2, "train.seed": 2}
    eager = run(tiny_config(**over, **{"train.steps": 6}), out=tmp_path / "e", progress=False)
    graphs = {**over, "train.cuda_graphs": True}
    straight = run(tiny_config(**graphs, **{"train.steps": 6}), out=tmp_path / "g",
                   progress=False)
    first = run(tiny_config(**graphs, **{"train.steps": 3}), out=tmp_path / "r", progress=False)
    resumed = run(resume=first.run_dir, steps=6, progress=False)
    ref = load_checkpoint(eager.run_dir / "checkpoints" / "last.pt")
    for result in (straight, resumed):
        got = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
        assert got["step"] == 6 and isinstance(got["opt_G"]["param_groups"][0]["lr"], float)
        assert _max_difference(ref, got) <= 1e-3
    rows = [json.loads(x) for x in (first.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in rows if "lr_g" in row]
    assert logged[-1]["step"] == 6 and logged[-1]["lr_g"] == pytest.approx(2e-4 * 0.5 ** 2.5)


def test_one_process_per_gpu(tmp_path):
    """Two processes on this node: NCCL with synchronised BatchNorm where there are two GPUs,
    else a one-line error before anything is written."""
    flags = ["train", "--data", "builtin:fashion-mnist", "--resolution", "28", "--channels",
             "1", "--ngf", "8", "--ndf", "8", "--device", "cuda", "--no-progress",
             "--batch-size", "16", "--steps", "4", "--checkpoint-every", "2",
             "--set", "train.sync_bn=true", "--out", tmp_path]
    r = torchrun(2, *flags)
    if torch.cuda.device_count() < 2:
        assert r.returncode != 0
        assert "only 1 GPU(s) are visible: one process per GPU" in r.stderr
        assert not any(tmp_path.iterdir())
        return
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    replicas = [row for row in rows if row.get("event") == "replicas"]
    assert replicas and all(len(set(row["sha256"])) == 1 for row in replicas)


def test_bench_on_the_gpu(tmp_path):
    out = tmp_path / "bench.json"
    r = gantool_cli("bench", "--backend", "torch,torch-bf16,torch-fp16-graphs",
                    "--resolution", "32", "--ngf", "4", "--batch-sizes", "1,4", "--warmup", "1",
                    "--calls", "3", "--json", out, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["cuda"] and set(results["peak_tflops"]) == {"fp32", "bf16", "fp16"}
    assert len(results["rows"]) == 6
    for row in results["rows"]:
        assert row["images_per_s"] > 0 and row["memory"] == "cuda" and row["peak_mib"] > 0, row
        assert 0 < row["roofline"] < 1, row
