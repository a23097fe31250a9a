"""Class-conditional generators: labels read from real files, a conditional pair trained for real
(tiny), drawn by class through the torch backend and the CLI; bad labels and bad --class values
as one-line errors."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantool.backends import load_backend
from gantool.data import load_dataset
from gantool.errors import DataError, GantoolError
from gantool.models.checkpoint import load_checkpoint
from gantool.train.loop import run

from conftest import assert_same_networks, gantool_cli, tiny_config

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def class_folders(root: Path, per_class: int = 2) -> Path:
    """root/<colour>/<i>.png: a folder per class, solid images of that colour."""
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 12), colour).save(root / name / f"{i}.png")
    return root


def colour_of(images: np.ndarray) -> list[str]:
    """The class colour of each (N, C, R, R) image, by its first pixel."""
    by_rgb = {v: k for k, v in COLOURS.items()}
    return [by_rgb[tuple(int(c) for c in img[:, 0, 0])] for img in images]


# --- labels in ----------------------------------------------------------------------------------

def test_class_folders_label_folders_zips_and_tars_alike(tmp_path):
    root = class_folders(tmp_path / "set")
    zpath, tpath = tmp_path / "set.zip", tmp_path / "set.tar"
    with zipfile.ZipFile(zpath, "w") as z, tarfile.open(tpath, "w") as t:
        for f in sorted(root.rglob("*.png")):
            z.write(f, f.relative_to(root).as_posix())
            t.add(f, f.relative_to(root).as_posix())
    for path in (root, zpath, tpath):
        s = load_dataset(path, 8, 3, labels=True)
        assert s.classes == ("blue", "green", "red")
        assert [s.classes[k] for k in s.labels] == colour_of(s.images), path


def test_dataset_json_labels_and_names_and_a_skipped_file_keeps_the_rest_aligned(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    pairs = []
    for i, name in enumerate(["red", "blue", "red", "green"]):
        Image.new("RGB", (12, 12), COLOURS[name]).save(root / f"{i}.png")
        pairs.append([f"{i}.png", ["blue", "green", "red"].index(name)])
    (root / "broken.png").write_bytes(b"\x89PNG broken")
    pairs.insert(0, ["broken.png", 0])
    (root / "dataset.json").write_text(json.dumps({"labels": pairs,
                                                   "classes": ["blue", "green", "red"]}))
    s = load_dataset(root, 8, 3, labels=True)
    assert len(s) == 4 and len(s.skipped) == 1
    assert [s.classes[k] for k in s.labels] == colour_of(s.images)


def test_idx_labels_and_class_names_of_the_builtin_sample():
    s = load_dataset("builtin:fashion-mnist", 28, 1, labels=True)
    assert s.classes[5] == "Sandal" and len(s.classes) == 10
    assert np.bincount(s.labels).tolist() == [600] * 10


@pytest.mark.parametrize("layout, words", [
    ("top-level", "outside class folders"),
    ("unlisted", "has no label in"),
    ("outside", "outside its \"classes\" list"),
    ("not-a-number", "is not a class number"),
    ("not-json", "is not a labels file"),
])
def test_bad_labels_are_one_line_errors_naming_the_file(tmp_path, layout, words):
    root = class_folders(tmp_path / "set")
    if layout == "top-level":
        Image.new("RGB", (12, 12)).save(root / "stray.png")
    elif layout != "top-level":
        files = sorted(f.relative_to(root).as_posix() for f in root.rglob("*.png"))
        pairs = [[f, 0] for f in files]
        if layout == "unlisted":
            pairs = pairs[1:]
        elif layout == "outside":
            pairs[2][1] = 7
        elif layout == "not-a-number":
            pairs[2][1] = "red"
        doc = {"labels": pairs, "classes": ["a", "b"]}
        (root / "dataset.json").write_text("{" if layout == "not-json" else json.dumps(doc))
    with pytest.raises(DataError) as e:
        load_dataset(root, 8, 3, labels=True)
    assert words in str(e.value) and "\n" not in str(e.value)


# --- training and drawing -----------------------------------------------------------------------

COND = {"data.class_labels": True, "train.steps": 6, "train.checkpoint_every": 3,
        "train.sample_grid": 20}


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    return run(tiny_config(**COND), out=tmp_path_factory.mktemp("cond"), progress=False)


def test_a_conditional_run_stores_its_classes_and_draws_by_class(conditional_run):
    ckpt = conditional_run.run_dir / "checkpoints" / "last.pt"
    config = json.loads((conditional_run.run_dir / "config.json").read_text())
    assert config["model"]["classes"][5] == "Sandal"
    gen = load_backend("torch", str(ckpt))
    assert gen.classes[9] == "Ankle boot"
    seeds = [3, 3, 4, 4]
    images = gen.generate(seeds, None, [0, 9, 0, 9])
    assert not np.array_equal(images[0], images[1])  # the class changes the image
    # a (seed, class) is one image whatever else is in the batch; no class: seed mod 10
    alone = gen.generate([3], None, [9])
    assert np.abs(alone[0].astype(int) - images[1]).max() <= 1
    assert np.array_equal(gen.generate([13], None), gen.generate([13], None, [3]))
    # the sample grid has one row per class (10 rows of 20 // 10 = 2 seeds)
    grid = np.asarray(Image.open(sorted((conditional_run.run_dir / "samples").glob("*.png"))[-1]))
    assert grid.shape[:2] == (10 * 30 + 2, 2 * 30 + 2)


def test_the_report_names_the_class_of_each_grid_row(conditional_run, tmp_path):
    pytest.importorskip("matplotlib", reason="the report extra is not installed")
    from gantool.report import write_report

    page = write_report(conditional_run.run_dir, tmp_path / "report.html").read_text()
    assert "one row per class, top to bottom: T-shirt/top, Trouser, Pullover" in page
    assert "Ankle boot." in page


def test_a_conditional_run_resumes_exactly(tmp_path):
    straight = run(tiny_config(**COND), out=tmp_path / "a", progress=False)
    first = run(tiny_config(**{**COND, "train.steps": 3}), out=tmp_path / "b", progress=False)
    resumed = run(resume=first.run_dir, steps=6, progress=False)
    a = load_checkpoint(straight.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert_same_networks(a, b)


@pytest.mark.parametrize("arch, d_arch, extra", [
    ("residual", "pooled", {"model.res_blocks": 2, "train.loss": "wgan-gp",
                            "model.d_spectral_norm": True}),
    ("fastgan", "fastgan", {"model.resolution": 48, "model.ngf": 4, "model.ndf": 4,
                            "model.d_spectral_norm": True, "train.augment": "translation"}),
])
def test_every_arch_trains_conditionally(tmp_path, arch, d_arch, extra):
    cfg = tiny_config(**{**COND, "model.arch": arch, "model.d_arch": d_arch, **extra})
    ckpt = run(cfg, out=tmp_path, progress=False).run_dir / "checkpoints" / "last.pt"
    gen = load_backend("torch", str(ckpt))
    images = gen.generate([0, 0], None, [1, 2])
    assert images.shape[0] == 2 and not np.array_equal(images[0], images[1])


def test_unlabelled_data_and_classes_without_labels_are_one_line_errors(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(20):
        Image.new("RGB", (12, 12), (i, i, i)).save(root / f"{i}.png")
    for over, words in (
            ({"data.path": str(root), "data.class_labels": True}, "outside class folders"),
            ({"model.classes": "a,b", "data.class_labels": False}, "read without labels"),
            ({"model.classes": "a,b"}, "differ from the run's model.classes")):
        with pytest.raises(GantoolError) as e:
            run(tiny_config(**{**COND, **over}), out=tmp_path / "runs", progress=False)
        assert words in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_generate_by_class_name_index_and_all_through_the_cli(conditional_run, tmp_path):
    ckpt = conditional_run.run_dir / "checkpoints" / "last.pt"
    r = gantool_cli("generate", ckpt, "--class", "all", "--seeds", "0-2", "--grid",
                    tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "g.png")).shape[:2] == (10 * 30 + 2, 3 * 30 + 2)
    r = gantool_cli("generate", ckpt, "--class", "sandal", "--seeds", "0-1", "--out",
                    tmp_path / "one", "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "one" / "manifest.jsonl").read_text().splitlines()]
    assert [row["class"] for row in rows] == ["Sandal", "Sandal"]
    drawn = load_backend("torch", str(ckpt)).generate([0, 1], None, [5, 5])[1]  # one batch
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one" / "seed000001.png")),
                          drawn[..., 0])
    r = gantool_cli("generate", ckpt, "--class", "0,Bag", "--seeds", "0", "--out",
                    tmp_path / "two", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["class000", "class008"]


@pytest.mark.parametrize("args, words", [
    (["--class", "sandle"], "did you mean 'Sandal'"),
    (["--class", "10"], "is not a class of this model"),
    (["--class", ","], "needs a class name or index"),
])
def test_bad_class_values_are_one_line_errors(conditional_run, tmp_path, args, words):
    ckpt = conditional_run.run_dir / "checkpoints" / "last.pt"
    r = gantool_cli("generate", ckpt, *args, "--seeds", "0", "--out", tmp_path / "x")
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_eval_per_class_scores_every_class_against_its_own_real_images(conditional_run,
                                                                       tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    r = gantool_cli("eval", conditional_run.run_dir, "--num", "20", "--metrics", "fid",
                    "--per-class", "--json", out, "--no-progress", timeout=900)
    assert r.returncode == 0, r.stderr
    per_class = json.loads(out.read_text())["per_class"]
    assert list(per_class)[5] == "Sandal" and len(per_class) == 10
    assert all(v["num_fake"] == 2 and v["num_real"] == 2 and np.isfinite(v["fid"])
               for v in per_class.values())
    assert "Ankle boot" in r.stdout and "compare the classes with one another" in r.stdout
    r = gantool_cli("eval", tiny_run[0], "--num", "8", "--per-class", "--no-progress")
    assert r.returncode == 2 and "this model is not conditional" in r.stderr


def test_an_unconditional_model_refuses_a_class(tiny_ckpt, tmp_path):
    r = gantool_cli("generate", tiny_ckpt, "--class", "0", "--seeds", "0", "--out", tmp_path)
    assert r.returncode == 2 and "not conditional" in r.stderr, r.stderr


@pytest.mark.slow
def test_one_seed_and_class_is_one_image_on_torch_onnx_and_fp16_onnx(conditional_run, tmp_path):
    """The class is a float one-hot graph input beside z, named in the model's description."""
    ckpt = conditional_run.run_dir / "checkpoints" / "last.pt"
    r = gantool_cli("export", ckpt, "--fp16", "--out", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    info = gantool_cli("info", tmp_path / "e" / "model.onnx")
    assert "class float32 [batch, 10]" in info.stdout and "10: T-shirt/top" in info.stdout
    seeds, classes = list(range(12)), [s * 7 % 10 for s in range(12)]
    drawn = {name: load_backend(backend, str(path), **opts).generate(seeds, 0.8, classes)
             for name, backend, path, opts in (
                 ("torch", "torch", ckpt, {}), ("onnx", "onnx", tmp_path / "e", {}),
                 ("fp16", "onnx", tmp_path / "e", {"fp16": True}))}
    assert np.array_equal(drawn["torch"], drawn["onnx"])
    assert np.abs(drawn["torch"].astype(int) - drawn["fp16"]).max() <= 2
    r = gantool_cli("generate", tmp_path / "e", "--backend", "onnx", "--class", "Bag",
                    "--seeds", "0-1", "--out", tmp_path / "o", "--no-progress")
    assert r.returncode == 0, r.stderr
    bag = load_backend("torch", str(ckpt)).generate([0, 1], None, [8, 8])
    assert np.array_equal(np.stack([np.asarray(Image.open(tmp_path / "o" / f"seed00000{i}.png"))
                                    for i in (0, 1)]), bag[..., 0])


@pytest.mark.slow
def test_triton_renders_by_class_what_torch_draws(conditional_run, tmp_path):
    """The ensemble takes a class per seed (latent turns it into the generator's one-hot
    input): gRPC with shared memory and HTTP render what the torch backend draws."""
    from gantool.serve.server import TritonServer, free_port

    ckpt = conditional_run.run_dir / "checkpoints" / "last.pt"
    r = gantool_cli("export", ckpt, "--formats", "onnx,triton", "--out", tmp_path / "e")
    assert r.returncode == 0, r.stderr
    with TritonServer(tmp_path / "e" / "model_repository", free_port(), free_port()) as server:
        grpc = gantool_cli("render", "--url", server.grpc_url, "--seeds", "0-5", "--class",
                           "Bag", "--truncation", "0.7", "--shared-memory", "on", "--out",
                           tmp_path / "bag", "--no-progress")
        http = gantool_cli("render", "--url", server.http_url, "--protocol", "http",
                           "--seeds", "0-3", "--class", "0,Ankle boot", "--out",
                           tmp_path / "two", "--no-progress")
        plain = gantool_cli("render", "--url", server.grpc_url, "--seeds", "10-13", "--out",
                            tmp_path / "plain", "--no-progress")
        bad = gantool_cli("render", "--url", server.grpc_url, "--seeds", "0", "--class",
                          "sandle", "--out", tmp_path / "bad", "--no-progress")
    for r in (grpc, http, plain):
        assert r.returncode == 0, r.stderr
    assert bad.returncode == 2 and "did you mean 'Sandal'" in bad.stderr, bad.stderr
    torch_gen = load_backend("torch", str(ckpt))

    def read(folder: Path, seeds) -> np.ndarray:
        return np.stack([np.asarray(Image.open(folder / f"seed{s:06d}.png")) for s in seeds])

    for folder, seeds, classes, t in (
            (tmp_path / "bag", range(6), [8] * 6, 0.7),
            (tmp_path / "two" / "class000", range(4), [0] * 4, None),
            (tmp_path / "two" / "class009", range(4), [9] * 4, None),
            (tmp_path / "plain", range(10, 14), None, None)):  # no class: seed mod 10
        drawn = torch_gen.generate(list(seeds), t, classes)[..., 0]
        diff = np.abs(read(folder, seeds).astype(int) - drawn)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, folder
    rows = [json.loads(x) for x in (tmp_path / "bag" / "manifest.jsonl").read_text().splitlines()]
    assert {row["class"] for row in rows} == {"Bag"}


def test_class_mix_follows_the_counts_and_is_none_without_them():
    from gantool.metrics.evaluate import class_mix

    assert class_mix(8, [18, 6]) == [0] * 6 + [1] * 2
    assert class_mix(100, [57, 0, 43]).count(0) == 57 and class_mix(100, [57, 0, 43]).count(1) == 0
    assert class_mix(10, []) is None and class_mix(10, [0, 0]) is None


@pytest.mark.slow  # an evaluation
def test_eval_draws_a_conditional_model_in_its_training_datas_proportions(tmp_path):
    """A model trained on 18 images of one class and 6 of the other records those counts, and
    eval draws 3 in 4 seeds of the first (``class_mix``; --class-mix uniform: every other)."""
    root = tmp_path / "data"
    for name, n, grey in (("many", 18, 30), ("few", 6, 200)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (28, 28), grey + i).save(root / name / f"{i}.png")
    r = run(tiny_config(**{"data.path": str(root), "data.class_labels": True,
                           "train.steps": 2}), out=tmp_path / "runs", progress=False)
    config = json.loads((r.run_dir / "config.json").read_text())
    counts = dict(zip(config["model"]["classes"], config["model"]["class_counts"]))
    assert counts == {"few": 6, "many": 18}
    out = tmp_path / "eval.json"
    cli = gantool_cli("eval", r.run_dir, "--num", "8", "--metrics", "fid", "--json", out,
                      "--no-progress", timeout=900)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(out.read_text())["class_mix"] == "data"
    assert "in the training data's proportions (many 75%, few 25%" in cli.stderr
