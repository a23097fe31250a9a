"""The FastGAN-style few-shot generator and discriminator: shapes, the latent contract (no
noise: an image is a function of its z), the self-supervised decoders, training and exact
resume, the time budget, export and every backend drawing the same image."""

import json
import re

import numpy as np
import pytest
import torch

from gantool.config import ModelConfig, apply_overrides, preset_config
from gantool.errors import ConfigError
from gantool.latent import latents
from gantool.models import build_discriminator, build_generator
from gantool.models.checkpoint import load_checkpoint
from gantool.models.fastgan import Excitation
from gantool.models.layers import fold_batchnorm, generator_cost
from gantool.train.loop import run

from conftest import FASHION_MNIST, assert_same_networks, gantool_cli, tiny_config

FAST = {"model.arch": "fastgan", "model.d_arch": "fastgan", "model.resolution": 48,
        "model.ngf": 4, "model.ndf": 4, "model.nz": 16, "model.d_spectral_norm": True,
        "train.batch_size": 4, "train.augment": "translation,color", "train.ema_decay": 0.99}


def tiny(res: int, channels: int = 3, noise: bool = False) -> ModelConfig:
    return ModelConfig(arch="fastgan", d_arch="fastgan", resolution=res, channels=channels,
                       nz=16, ngf=2, ndf=2, max_channels=16, d_spectral_norm=True, noise=noise)


@pytest.mark.parametrize("res,channels", [(48, 1), (64, 3), (128, 3), (256, 3),
                                          pytest.param(1024, 3, marks=pytest.mark.slow)])
def test_shapes_logits_and_reconstruction(res, channels):
    m = tiny(res, channels)
    g, d = build_generator(m).eval(), build_discriminator(m)
    with torch.no_grad():
        x = g(torch.randn(2, 16))
    assert x.shape == (2, channels, res, res) and x.abs().max() <= 1
    base = 3 if res == 48 else 4
    logits, recon = d(x, reconstruct=True)
    assert logits.shape == (2, 2 * (base + 1) ** 2)  # the big and the small branch's patches
    assert recon.ndim == 0 and recon > 0
    assert torch.equal(d.eval()(x), d(x, reconstruct=True)[0])
    sle = [k for k, v in g.named_modules() if isinstance(v, Excitation)]
    levels = {64: 1, 128: 2, 256: 3, 1024: 5}.get(res, 1)  # level i - 4 excites level i
    assert len(sle) == levels


def test_too_small_a_resolution_is_one_line():
    with pytest.raises(ConfigError, match="fastgan needs at least 4 doublings.*32 px is too "
                                          "small.*smallest: 48, 64, 80, 112"):
        build_generator(ModelConfig(arch="fastgan", resolution=32))


@pytest.mark.parametrize("noise", [False, True])
def test_an_image_depends_on_its_z_alone_and_folds_like_the_export(noise):
    """The same z gives the same image in any batch, and folding BatchNorm (what the torch
    backend and the ONNX export do) keeps it; with model.noise, training draws fresh noise
    and eval mode one fixed map per layer."""
    g = build_generator(tiny(64, noise=noise))
    noises = [p for name, p in g.named_parameters() if name.endswith(".weight") and p.numel() == 1]
    assert len(noises) == (4 if noise else 0)  # two convs in each of the 2 doubled blocks
    with torch.no_grad():
        for p in noises:
            p.fill_(0.5)
        z0 = torch.randn(2, 16)
        assert torch.equal(g(z0), g(z0)) != noise  # fresh noise in training mode only
        for _ in range(3):  # running statistics that are not the identity
            g(torch.randn(8, 16))
    g.eval()
    z = torch.from_numpy(latents([0, 1, 2, 3, 4], 16, "normal", None))
    with torch.no_grad():
        batch, alone, again = g(z), g(z[3:4]), g(z)
        folded = fold_batchnorm(g)(z)
    assert torch.equal(batch, again)
    assert torch.allclose(batch[3:4], alone, atol=1e-6)
    assert torch.allclose(batch, folded, atol=1e-5)
    assert not [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_the_decoders_learn_to_redraw_real_images():
    """D's self-supervised loss is a real objective: trained on it alone, the reconstruction
    error of a fixed batch falls."""
    torch.manual_seed(0)
    d = build_discriminator(tiny(64))
    opt = torch.optim.Adam(d.parameters(), lr=2e-3)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    x = torch.nn.functional.avg_pool2d(x, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)
    losses = []
    for _ in range(40):
        loss = d(x, reconstruct=True)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_presets_and_the_hinge_default():
    few, big = preset_config("few-shot"), preset_config("few-shot-1024")
    assert (few.model.arch, few.model.d_arch, few.train.loss) == ("fastgan", "fastgan", "hinge")
    assert big.model.resolution == 1024 and big.model.ngf == 64 and big.train.batch_size == 8
    assert (few.train.lr_g, big.train.lr_g) == (5e-4, 2e-4)  # ours on a CPU; the paper's
    cfg = apply_overrides(preset_config("colour-small"), {"model.d_arch": "fastgan"})
    assert cfg.train.loss == "hinge"  # the loss a fastgan D is made for
    cfg = apply_overrides(preset_config("colour-small"),
                          {"model.d_arch": "fastgan", "train.loss": "bce"})
    assert cfg.train.loss == "bce"  # unless named


def test_cost_counts_multiply_adds():
    params, macs = generator_cost(build_generator(tiny(64)), 16)
    assert params == sum(p.numel() for p in build_generator(tiny(64)).parameters())
    big = generator_cost(build_generator(preset_config("few-shot-1024").model), 256)
    marchesi = generator_cost(build_generator(preset_config("marchesi-1024").model), 100)
    assert 1e10 < big[1] < marchesi[1]  # FastGAN at 1024 px: about half Marchesi's DCGAN
    assert 0 < macs < big[1]


@pytest.mark.slow
def test_training_logs_reconstruction_and_resumes_exactly(tmp_path):
    over = {**FAST, "train.checkpoint_every": 2, "data.flip": True}
    straight = run(tiny_config(**over, **{"train.steps": 4}), out=tmp_path / "a", progress=False)
    first = run(tiny_config(**over, **{"train.steps": 2}), out=tmp_path / "b", progress=False)
    resumed = run(resume=first.run_dir, steps=4, progress=False)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert_same_networks(a, b)
    rows = [json.loads(x) for x in (straight.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss_recon"] > 0 and np.isfinite(r["loss_d"]) for r in rows if "loss_d" in r)
    assert a["config"]["train"]["loss"] == "hinge"


@pytest.mark.slow
def test_max_time_stops_with_a_checkpoint_and_a_resume_command(tmp_path):
    args = ["train", "--data", "builtin:fashion-mnist", "--resolution", "28", "--channels", "1",
            "--ngf", "4", "--ndf", "4", "--batch-size", "8", "--steps", "100000",
            "--checkpoint-every", "100000", "--sample-every", "100000", "--out", tmp_path,
            "--no-progress"]
    r = gantool_cli(*args, "--max-time", "8s")
    assert r.returncode == 75, r.stderr
    run_dir = next(tmp_path.iterdir())
    assert "time budget (--max-time) reached at step" in r.stderr
    assert f"continue with: gantool train --resume {run_dir}" in r.stderr
    step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert 0 < step < 100000
    r = gantool_cli("train", "--resume", run_dir, "--max-time", "0:05", "--no-progress")
    assert r.returncode == 75 and f"resuming {run_dir} at step {step}" in r.stderr
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] > step
    bad = gantool_cli(*args, "--max-time", "90")
    assert bad.returncode == 2 and "error: --max-time: cannot read '90'" in bad.stderr
    assert len(list(tmp_path.iterdir())) == 1  # the refused run wrote nothing


def test_a_budget_spent_before_the_first_step_still_leaves_a_resumable_run(tmp_path):
    """The budget counts from the start: one spent on loading leaves a step-0 checkpoint, so
    the printed resume command works."""
    cfg = tiny_config(**{"train.steps": 3})
    first = run(cfg, out=tmp_path, progress=False, max_time=1e-9)
    assert first.out_of_time and first.step == 0 and first.checkpoint is not None
    done = run(resume=first.run_dir, progress=False)
    assert done.step == 3 and not done.interrupted


@pytest.mark.slow
@pytest.mark.parametrize("noise", [False, True])
def test_export_fp16_and_every_cpu_backend_draw_the_same_image(tmp_path, noise):
    """A trained fastgan checkpoint: `gantool info` shows its cost; `export --fp16` verifies
    ONNX and FP16 ONNX; torch and ONNX Runtime draw the same bytes for a seed (with the fixed
    noise maps of model.noise too)."""
    from gantool.backends import load_backend

    result = run(tiny_config(**FAST, **{"train.steps": 2, "model.noise": noise}),
                 out=tmp_path / "runs", progress=False)
    if noise:
        w = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["G_ema"]
        assert any(k.endswith("fixed") for k in w) and all(
            w[k].abs().item() > 0 for k in w if k.endswith(".weight") and w[k].numel() == 1)
    ckpt = result.run_dir / "checkpoints" / "last.pt"
    info = gantool_cli("info", ckpt)
    assert info.returncode == 0 and "fastgan / fastgan" in info.stdout
    assert "multiply-adds per image" in info.stdout
    out = tmp_path / "export"
    r = gantool_cli("export", ckpt, "--fp16", "--out", out)
    assert r.returncode == 0, r.stderr
    # float32 graphs may round a value across a byte boundary here and there, never further
    assert re.search(r"model\.onnx \(fp32, 8 images\): (identical|PSNR [\d.]+ dB, max byte "
                     r"diff 1,)", r.stdout + r.stderr), r.stdout + r.stderr
    torch_img = load_backend("torch", str(ckpt), device="cpu").generate([5, 6], 0.7)
    onnx_img = load_backend("onnx", str(out)).generate([5, 6], 0.7)
    fp16_img = load_backend("onnx", str(out), fp16=True).generate([5, 6], 0.7)
    diff = np.abs(torch_img.astype(int) - onnx_img.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert np.abs(fp16_img.astype(int) - torch_img.astype(int)).max() <= 4


@pytest.mark.slow
def test_triton_renders_the_images_torch_draws(tmp_path):
    """A fastgan model through a real Triton server (gRPC, shared memory): the same images as
    the torch backend for the same seeds and truncation."""
    from PIL import Image

    from gantool.backends import load_backend
    from gantool.serve.server import TritonServer, free_port

    result = run(tiny_config(**FAST, **{"train.steps": 2}), out=tmp_path / "runs",
                 progress=False)
    ckpt = result.run_dir / "checkpoints" / "last.pt"
    out = tmp_path / "export"
    r = gantool_cli("export", ckpt, "--formats", "onnx,triton", "--out", out)
    assert r.returncode == 0, r.stderr
    with TritonServer(out / "model_repository", free_port(), free_port()) as server:
        r = gantool_cli("render", "--url", server.grpc_url, "--seeds", "0-9", "--truncation",
                        "0.7", "--out", tmp_path / "r", "--shared-memory", "on",
                        "--no-progress")
        # the normal prior's documented minimum, which reaches the server as float32
        low = gantool_cli("render", "--url", server.grpc_url, "--seeds", "0-1", "--truncation",
                          "0.01", "--out", tmp_path / "low", "--no-progress")
    assert low.returncode == 0 and len(list((tmp_path / "low").glob("*.png"))) == 2, low.stderr
    assert r.returncode == 0, r.stderr
    rendered = np.stack([np.asarray(Image.open(tmp_path / "r" / f"seed{s:06d}.png"))
                         for s in range(10)])
    drawn = load_backend("torch", str(ckpt), device="cpu").generate(list(range(10)), 0.7)
    diff = np.abs(rendered.reshape(drawn.shape).astype(int) - drawn.astype(int))  # grey: no C
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION_MNIST / "train-labels-idx1-ubyte.gz").exists(),
                    reason="needs the Fashion-MNIST IDX files in ../shared/data/fashion-mnist")
def test_eval_mode_ema_draws_garments_as_well_as_batch_statistics(tmp_path):
    """FastGAN's own scripts sample in training mode (batch statistics) because its EMA copy
    has no BatchNorm statistics of its own; gantool's EMA generator carries standing statistics
    measured on itself at each checkpoint (G's running statistics, which it copied before, drew
    a Frechet distance of 366.9 against 315.0 here, standing statistics 313.2) and is drawn in
    eval mode, BatchNorm folded (the torch backend, as exported).
    On the same 1,000 seeds, the garment classifier's Frechet distance of eval-mode images is
    no worse than that of train-mode ones (batches of 64). 50 steps: the EMA's short warm-up
    horizon keeps its weights far enough from G's there for G's statistics to show (pixels 10x
    further from batch statistics than with its own; by step 100 the two nets are too close for
    either measure to tell them apart; 400 steps cost 90 s of CI: docs/quality.md)."""
    from gantool.backends import load_backend
    from gantool.models import build_generator
    from gantool.models.checkpoint import load_generator

    from garments import GarmentJudge

    judge = GarmentJudge(FASHION_MNIST)
    cfg = tiny_config(**{**FAST, "data.path": str(FASHION_MNIST), "model.ngf": 8,
                         "model.ndf": 8, "train.batch_size": 16, "train.steps": 50,
                         "train.log_every": 50, "train.diversity_every": 0})
    ckpt = run(cfg, out=tmp_path, progress=False).run_dir / "checkpoints" / "last.pt"
    seeds = list(range(1000))

    def to28(images: np.ndarray) -> np.ndarray:  # uint8 (N, 48, 48, 1) -> (N, 28, 28, 1)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=28, mode="bilinear", antialias=True)
        return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    eval_mode = judge.score(to28(load_backend("torch", str(ckpt), device="cpu")
                                 .generate(seeds, None)))
    net = load_generator(ckpt).net.train()
    with torch.no_grad():
        z = torch.from_numpy(latents(seeds, cfg.model.nz, "normal", None))
        train_mode = np.concatenate([
            ((net(chunk) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
            .permute(0, 2, 3, 1).numpy() for chunk in z.split(64)])
    train_mode = judge.score(to28(train_mode))
    print(f"eval mode {eval_mode}\ntrain mode {train_mode}")
    assert eval_mode["classes"] >= 5, eval_mode  # a model that draws garments, not noise
    assert eval_mode["frechet"] <= 1.1 * train_mode["frechet"], (eval_mode, train_mode)
    # the statistics are G_ema's own: its eval-mode images are near its batch-statistics ones,
    # much nearer than with G's statistics (what it copied before)
    state = load_checkpoint(ckpt)
    copied = build_generator(cfg.model)
    copied.load_state_dict({**state["G_ema"], **{k: v for k, v in state["G"].items()
                                                 if "running" in k}})
    with torch.no_grad():
        batch = net(z[:256])
        own = (load_generator(ckpt).net.eval()(z[:256]) - batch).abs().mean()
        with_g_stats = (copied.eval()(z[:256]) - batch).abs().mean()
    print(f"mean |eval - batch statistics|: own {own:.4f}, G's {with_g_stats:.4f}")
    assert own < 0.5 * with_g_stats


@pytest.mark.slow
def test_two_processes_train_a_fastgan_pair_and_keep_identical_replicas(tmp_path):
    """torchrun: gradients (the decoders' included) averaged, BatchNorm buffers shared, so the
    replica check at each checkpoint finds the ranks bit-identical."""
    from conftest import torchrun

    sets = sum((["--set", f"{k}={v}"] for k, v in FAST.items() if k != "train.batch_size"), [])
    r = torchrun(2, "train", "--data", "builtin:fashion-mnist", "--channels", "1", *sets,
                 "--batch-size", "8", "--steps", "4", "--checkpoint-every", "2",
                 "--sample-every", "4", "--out", tmp_path, "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    replicas = [row for row in rows if row.get("event") == "replicas"]
    assert [row["step"] for row in replicas] == [2, 4]
    assert all(row["world"] == 2 and len(set(row["sha256"])) == 1 for row in replicas)
