"""Real training steps on the bundled sample: run directory, checkpoints, exact resume."""

import json

import pytest
import torch
from rich.console import Console

from gantool.config import run_config
from gantool.errors import GantoolError
from gantool.models.checkpoint import load_checkpoint, load_generator
from gantool.report import read_metrics, write_report
from gantool.train.batches import EpochOrder
from gantool.train.loop import run
from gantool.train.losses import LABEL_TARGETS, d_loss_bce
from gantool.train.run_files import step_checkpoints

from conftest import assert_same_networks, tiny_config


def test_run_directory_layout(tiny_run):
    run_dir, cfg = tiny_run
    assert run_dir.name == "00001-tiny"
    assert run_config(json.loads((run_dir / "config.json").read_text())) == cfg
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "lr_g", "lr_d", "images_per_s"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "step-0000000.png", "step-0000006.png", "step-0000012.png"]  # before step 1, then 6
    session = json.loads((run_dir / "session.json").read_text())
    assert (session["device"], session["precision"], session["processes"]) == (
        "cpu", "float32", 1)
    ckpts = run_dir / "checkpoints"
    # keep=2: the two newest step checkpoints plus last.pt
    assert [p.name for p in step_checkpoints(ckpts)] == ["step-0000012.pt", "step-0000008.pt"]
    assert (ckpts / "last.pt").read_bytes() == (ckpts / "step-0000012.pt").read_bytes()


def test_checkpoint_is_full_state_and_weights_only(tiny_ckpt):
    state = torch.load(tiny_ckpt, weights_only=True)
    for key in ("config", "step", "epoch", "G", "D", "G_ema", "opt_G", "opt_D", "scaler", "rng"):
        assert key in state, key
    assert state["step"] == 12
    g, m, config, step = load_generator(tiny_ckpt)
    assert not g.training and m.ngf == 8 and config["model"]["ngf"] == 8 and step == 12
    ema = load_generator(tiny_ckpt, ema=True)[0].state_dict()
    raw = load_generator(tiny_ckpt, ema=False)[0].state_dict()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)


def test_next_run_gets_the_next_number(tiny_run, tmp_path):
    out = tiny_run[0].parent
    result = run(tiny_config(**{"train.steps": 1}), out=out, progress=False)
    assert result.run_dir.name == "00002-tiny"


def _assert_same_state(a, b):
    assert_same_networks(a, b)
    for opt in ("opt_G", "opt_D"):
        for pid, st in a[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(b[opt]["state"][pid][k]))
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_resume_continues_exactly(tmp_path):
    """N steps, stop, resume to 2N == 2N straight (dropout, flips, lr decay, EMA, DiffAugment,
    spectral norm, minibatch stddev, extra updates all on)."""
    over = {"train.checkpoint_every": 3, "model.d_dropout": 0.3, "data.flip": True,
            "train.lr_gamma": 0.5, "train.lr_gamma_every": 4, "train.labels": "two-sided",
            "model.d_spectral_norm": True, "model.d_mbstd": True,
            "train.extra_update_every": 2, "train.augment": "color,translation,cutout"}
    straight = run(tiny_config(**over, **{"train.steps": 6}), out=tmp_path / "a", progress=False)
    first = run(tiny_config(**over, **{"train.steps": 3}), out=tmp_path / "b", progress=False)
    resumed = run(resume=first.run_dir, steps=6, progress=False)
    assert resumed.run_dir == first.run_dir and resumed.step == 6
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    _assert_same_state(a, b)
    assert b["opt_G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 0.5 ** (5 / 4))
    rows = (first.run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in rows]
    assert steps == sorted(set(steps))  # no duplicated rows after resume


def test_the_ema_generator_draws_with_batchnorm_statistics_of_its_own(tmp_path):
    """G_ema's BatchNorm statistics are measured on G_ema (standing statistics), not copied from
    G, whose statistics belong to other weights: its eval-mode images are much closer to its
    batch-statistics images than they are with G's statistics."""
    from gantool.latent import latents
    from gantool.models import build_generator

    cfg = tiny_config(**{"train.steps": 30, "train.ema_decay": 0.9})
    state = load_checkpoint(run(cfg, out=tmp_path, progress=False).run_dir / "checkpoints"
                            / "last.pt")
    ours, copied = build_generator(cfg.model), build_generator(cfg.model)
    ours.load_state_dict(state["G_ema"])
    copied.load_state_dict({**state["G_ema"], **{k: v for k, v in state["G"].items()
                                                 if "running" in k}})
    z = torch.from_numpy(latents(range(256), cfg.model.nz))
    with torch.no_grad():
        drawn, with_g_stats, batch = ours.eval()(z), copied.eval()(z), ours.train()(z)
    error, error_copied = (drawn - batch).abs().mean(), (with_g_stats - batch).abs().mean()
    print(f"mean |eval - batch statistics|: own {error:.4f}, G's {error_copied:.4f}")
    assert error < 0.5 * error_copied


DAMAGED = [b"123", b"null", b'{"step": "abc", "loss_d": 1.0}', b'{"step": 2, "loss_d": "x"}',
           b"\xff\xfe not utf-8", b'{"step": 2, "event": "rollback"}', b'{"step": 2, "loss']


def test_damaged_metrics_lines_are_dropped_on_resume_and_skipped_by_the_report(tmp_path):
    """Lines no reader can use (a torn write, a hand edit) cost one line of warning each time,
    not a traceback: resume drops them, the report draws what is left."""
    first = run(tiny_config(**{"train.steps": 4, "train.log_every": 1}), out=tmp_path,
                progress=False)
    metrics = first.run_dir / "metrics.jsonl"
    good = metrics.read_bytes()
    metrics.write_bytes(good + b"\n".join(DAMAGED) + b"\n")
    assert write_report(first.run_dir).is_file()  # skips them (and says so on stderr)
    rows, _, bad = read_metrics(first.run_dir)
    assert bad == len(DAMAGED) and [r["step"] for r in rows] == [1, 2, 3, 4]
    console = Console(record=True, width=300)
    done = run(resume=first.run_dir, steps=6, progress=False, console=console)
    assert done.step == 6
    assert f"dropped {len(DAMAGED)} damaged line(s)" in console.export_text()
    assert metrics.read_bytes().startswith(good)
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("damage", ["empty", "half"])
def test_a_damaged_newest_checkpoint_is_set_aside_and_resume_uses_the_one_before(tmp_path,
                                                                                damage):
    first = run(tiny_config(**{"train.steps": 8, "train.checkpoint_every": 4, "train.keep": 3}),
                out=tmp_path, progress=False)
    ckpts = first.run_dir / "checkpoints"
    newest = ckpts / "step-0000008.pt"
    size = newest.stat().st_size
    with newest.open("r+b") as f:  # in place: last.pt, a hard link to it, is damaged too
        f.truncate(0 if damage == "empty" else size // 2)
    console = Console(record=True, width=300)
    done = run(resume=first.run_dir, steps=10, progress=False, console=console)
    text = console.export_text()
    assert f"{newest} is damaged (cannot read checkpoint" in text
    assert "kept as step-0000008.pt.damaged, resuming from step 4" in text
    assert done.step == 10 and (ckpts / "step-0000008.pt.damaged").stat().st_size == size // 2 * (
        damage == "half")
    assert load_checkpoint(ckpts / "last.pt")["step"] == 10
    assert [p.name for p in step_checkpoints(ckpts)] == ["step-0000010.pt", "step-0000008.pt",
                                                         "step-0000004.pt"]


def test_resume_from_an_older_checkpoint_keeps_newer_ones(tiny_run):
    ckpts = tiny_run[0] / "checkpoints"
    with pytest.raises(GantoolError, match="checkpoints past step 8"):
        run(resume=ckpts / "step-0000008.pt", steps=20, progress=False)
    assert [p.name for p in step_checkpoints(ckpts)] == ["step-0000012.pt", "step-0000008.pt"]


def test_resume_refuses_a_finished_run(tiny_run):
    with pytest.raises(GantoolError, match="already reached step 12"):
        run(resume=tiny_run[0], progress=False)


def test_step_decay(tmp_path):
    cfg = tiny_config(**{"train.steps": 6, "train.lr_decay_at": 3, "train.lr_decay_factor": 0.1,
                         "train.log_every": 1, "train.sample_every": 100})
    rows = (run(cfg, out=tmp_path, progress=False).run_dir / "metrics.jsonl").read_text()
    lrs = [r["lr_g"] for r in map(json.loads, rows.splitlines())]
    # row k is logged after step k ran; steps 4.. (index 3..) run at the decayed rate
    assert lrs == pytest.approx([2e-4] * 3 + [2e-5] * 3)


def test_label_smoothing_changes_targets():
    real, fake = torch.full((8,), 3.0), torch.full((8,), -3.0)
    losses = {name: d_loss_bce(real, fake, name).item() for name in LABEL_TARGETS}
    assert losses["hard"] < losses["one-sided"] < losses["two-sided"]
    assert LABEL_TARGETS["one-sided"] == (0.9, 0.0) and LABEL_TARGETS["two-sided"] == (0.9, 0.1)


def test_epoch_sampler_is_a_permutation_per_epoch():
    s = EpochOrder(10, 3, seed=1, flip=True)
    epoch0 = torch.cat([s.batch(i)[0] for i in range(3)])
    assert len(set(epoch0.tolist())) == 9  # drop-last, no repeats
    assert not torch.equal(epoch0, torch.cat([s.batch(i)[0] for i in range(3, 6)]))
    assert torch.equal(s.batch(4)[0], EpochOrder(10, 3, seed=1, flip=True).batch(4)[0])


def test_dataset_smaller_than_batch_is_an_error(tmp_path):
    with pytest.raises(GantoolError, match="fewer than the batch size"):
        run(tiny_config(**{"train.batch_size": 10_000}), out=tmp_path, progress=False)
    assert not any(tmp_path.iterdir()), "no run directory is created for a failed start"


def test_training_moves_the_discriminator_off_chance(tiny_run):
    rows = [json.loads(x) for x in (tiny_run[0] / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["d_real"] > rows[-1]["d_fake"]  # D learned to tell real from fake


FASTGAN = {"model.arch": "fastgan", "model.d_arch": "fastgan", "model.resolution": 48,
           "model.ngf": 4, "model.ndf": 4, "model.nz": 16, "model.d_spectral_norm": True,
           "train.batch_size": 4, "train.augment": "translation,color"}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["dcgan", "fastgan"])
def test_compiled_training_computes_what_eager_training_does(tmp_path, arch):
    """train.compile (torch.compile of G and D): same losses and weights as eager, to float
    tolerance, and checkpoints a plain generator loads.

    The few-shot pair's D has spectral norm, whose power iteration rounds differently when
    compiled (its u and v vectors differ by up to 1e-4 after 2 steps; without spectral norm
    the weights match eager's to 1e-6). Adam's first steps divide each gradient by its own
    magnitude, so an element whose gradient is near zero can move by +lr or -lr on that noise:
    there, the test requires the losses to match, at most 0.5% of the elements to differ by
    more than 1e-4 (0.07% measured), and none by more than Adam's step bound, 2 x lr per step
    (a real difference in what is computed moves every element)."""
    nets = FASTGAN if arch == "fastgan" else {}
    results, losses = {}, {}
    with torch._inductor.config.patch(fallback_random=True):
        for compiled in (False, True):
            cfg = tiny_config(**nets, **{
                "train.steps": 2, "train.checkpoint_every": 2, "train.seed": 5,
                "train.log_every": 1, "train.compile": compiled,
                "train.amp": "off",  # same arithmetic
                "train.channels_last": False})  # on a GPU too
            out = run(cfg, out=tmp_path / str(compiled), progress=False)
            results[compiled] = torch.load(out.run_dir / "checkpoints" / "last.pt",
                                           weights_only=True)
            losses[compiled] = [[r["loss_d"], r["loss_g"]] for r in read_metrics(out.run_dir)[0]]
    eager, compiled = results[False], results[True]
    assert list(compiled["G"]) == list(eager["G"]), "no _orig_mod. prefixes in checkpoints"
    assert len(losses[True]) == 2
    torch.testing.assert_close(losses[True], losses[False], atol=1e-4, rtol=2e-3)
    if arch == "fastgan":
        diffs = torch.cat([(compiled[k][n].float() - v.float()).abs().flatten()
                           for k in ("G", "D") for n, v in eager[k].items()
                           if v.is_floating_point()])
        print(f"fastgan: {(diffs > 1e-4).float().mean():.2%} of the elements beyond 1e-4, "
              f"largest {diffs.max():.2e}")
        assert (diffs > 1e-4).float().mean() < 0.005
        assert diffs.max() <= 2 * 2 * max(cfg.train.lr_g, cfg.train.lr_d)
        return
    for key in ("G", "D", "G_ema"):
        for name, value in eager[key].items():
            torch.testing.assert_close(compiled[key][name], value, atol=1e-4, rtol=1e-3,
                                       msg=f"{key}.{name}")


@pytest.mark.slow
def test_a_log_file_gets_status_lines(tmp_path):
    """stderr redirected (a log file, a cluster job): plain status lines while training, the
    run folder and the resume command first, not one cut-off bar at the end."""
    from conftest import gantool_cli

    r = gantool_cli("train", "--data", "builtin:fashion-mnist", "--resolution", "28",
                    "--channels", "1", "--ngf", "8", "--ndf", "8", "--batch-size", "16",
                    "--steps", "40", "--sample-every", "20", "--set", "train.log_every=5",
                    "--progress-every", "0.01", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    run_dir = next(tmp_path.iterdir())
    assert f"run: {run_dir} (if stopped: gantool train --resume {run_dir})" in lines
    status = [ln for ln in lines if ln.startswith("train ")]
    assert len(status) >= 8 and status[-1].startswith("train 40/40  epoch")
    for key in ("D ", "G ", "D(x) ", "D(G(z)) ", "img/s ", "elapsed ", "eta "):
        assert key in status[-1], status[-1]
    assert len(set(status)) == len(status)  # no line twice
    assert f"step 20 (epoch 0.05): sample grid {run_dir}/samples/step-0000020.png" in lines
    assert any(ln.startswith("train 20/40") for ln in status)
    assert "━" not in r.stderr  # no bar


def test_tensorboard_events_read_back_and_a_resume_replaces_what_came_after(tmp_path):
    """train.tensorboard: scalars, sample grids and the configuration, read back with
    TensorBoard's own reader. A resume from an older checkpoint (what a crash leaves) drops the
    later events, as it drops the later metrics rows: no step twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gantool.train.run_files import step_of

    cfg = tiny_config(**{"train.steps": 12, "train.checkpoint_every": 4,
                         "train.sample_every": 6, "train.tensorboard": True,
                         "train.diversity_every": 4})
    result = run(cfg, out=tmp_path, progress=False)
    ckpts = result.run_dir / "checkpoints"
    for path in step_checkpoints(ckpts):  # as if killed after step 10's row, before step 12
        if step_of(path) > 8:
            path.unlink()
    (ckpts / "last.pt").unlink()
    run(resume=result.run_dir, steps=12, progress=False)

    events = EventAccumulator(str(result.run_dir / "tensorboard"),
                              size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("loss/d", "loss/g", "D/real", "D/fake", "lr/g", "lr/d", "spread",
                "images_per_s", "diversity"):
        assert tag in tags["scalars"], tags["scalars"]
    loss_d = events.Scalars("loss/d")
    assert [e.step for e in loss_d] == [2, 4, 6, 8, 10, 12], "no step twice after the resume"
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in loss_d] == pytest.approx([r["loss_d"] for r in rows], rel=1e-6)
    assert [e.step for e in events.Scalars("diversity")] == [4, 8, 12]
    grids = events.Images("samples")
    assert [g.step for g in grids] == [0, 6, 12]
    from PIL import Image

    png = Image.open(result.run_dir / "samples" / "step-0000012.png")
    assert (grids[-1].width, grids[-1].height) == png.size
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"tensorboard": true' in text


def test_tensorboard_without_the_extra_is_one_line_and_no_run_folder(tmp_path):
    from conftest import gantool_cli

    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['tensorboard'] = None\n")
    r = gantool_cli("train", "--data", "builtin:fashion-mnist", "--resolution", "28",
                    "--channels", "1", "--steps", "2", "--tensorboard", "--out", tmp_path / "runs",
                    env_extra={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2 and "pip install 'gantool[tensorboard]'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()
