"""gantool import: NVIDIA StyleGAN2 and StyleGAN3 pickles read without running them, rebuilt as
gantool's own networks, drawing the images NVIDIA's own code draws.

The fixtures (tests/fixtures/imported/README.md) are small generators built and pickled with
NVIDIA's code as its training loop pickles them, with their module source stripped, and the
reference PNGs that NVIDIA's gen_images.py recipe drew from them (seeds 0, 85, 265; psi 1, 0.7,
-0.5; noise const; the first and last class of the conditional one).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantool.backends import load_backend
from gantool.errors import GantoolError
from gantool.importers import import_generator
from gantool.models.checkpoint import load_checkpoint

from conftest import cli_in_process, gantool_cli

FIXTURES = Path(__file__).parent / "fixtures" / "imported"
LIGHTWEIGHT = FIXTURES / "lightweight-gan" / "models"
SOURCES = {**{n: FIXTURES / f"{n}.pkl" for n in ("sg2-skip-16", "sg2-resnet-32", "sg2-cond-16",
                                                 "sg2-orig-gray-8", "sg3-t-32", "sg3-r-cond-16")},
           **{n: LIGHTWEIGHT / n / "model_3.pt" for n in ("lwg-attn-128", "lwg-dct-gray-128")},
           **{n: FIXTURES / "fastgan" / n / "models" / "all_5000.pth"
              for n in ("fastgan-256", "fastgan-512")}}
KINDS = list(SOURCES)
STRIPPED = b"# module source stripped (NVIDIA Source Code License)\n"


def references(name: str):
    """(seed, psi, class or None, uint8 (H, W, C) image) of each reference of a fixture."""
    for fname, r in json.loads((FIXTURES / f"{name}.json").read_text()).items():
        image = np.asarray(Image.open(FIXTURES / fname))
        yield r["seed"], r["psi"], r["cls"], image if image.ndim == 3 else image[..., None]


def differences(gen, name: str) -> tuple[int, float, int]:
    """(max, mean) absolute byte difference from the references, and how many were drawn."""
    worst, means, count = 0, [], 0
    for seed, psi, cls, ref in references(name):
        img = gen.generate([seed], psi, None if cls is None else [cls])[0]
        d = np.abs(img.astype(int) - ref.astype(int))
        worst, count = max(worst, int(d.max())), count + 1
        means.append(d.mean())
    return worst, float(np.mean(means)), count


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Every fixture imported once: name -> checkpoint path."""
    folder = tmp_path_factory.mktemp("imported")
    return {n: import_generator(SOURCES[n], folder / f"{n}.pt") and folder / f"{n}.pt"
            for n in KINDS}


@pytest.mark.parametrize("name", KINDS)
def test_torch_draws_the_tools_images(imported, name):
    worst, mean, count = differences(load_backend("torch", str(imported[name])), name)
    print(f"{name}: {count} references, max {worst}/255, mean {mean:.4f}/255")
    assert count >= 1
    assert worst <= 2, (worst, mean)


def test_the_record_says_where_it_came_from(imported):
    import hashlib

    path = imported["sg2-cond-16"]
    rec = torch.load(path, weights_only=True)  # a plain record: no code, no classes
    source = (FIXTURES / "sg2-cond-16.pkl").read_bytes()
    assert rec["origin"] == {"kind": "stylegan2", "tool": "NVIDIA network pickle",
                             "file": "sg2-cond-16.pkl", "bytes": len(source),
                             "sha256": hashlib.sha256(source).hexdigest()}
    m = load_checkpoint(path)["config"]["model"]
    assert (m["arch"], m["prior"], m["nz"], m["resolution"]) == ("stylegan2", "stylegan", 12, 16)
    assert m["classes"] == ["0", "1", "2"]


def test_truncation_is_psi_toward_the_average_w(imported):
    gen = load_backend("torch", str(imported["sg2-skip-16"]))
    a, b = gen.generate([1, 2], 0.0)  # psi 0: every seed draws the average image
    assert np.array_equal(a, b)
    assert not np.array_equal(*gen.generate([1, 2], None))
    # one batch can mix truncations row by row (as Triton's batcher does): psi is (B, 1)
    z = torch.from_numpy(np.random.RandomState(5).randn(2, 16).astype(np.float32))
    with torch.no_grad():
        mixed = gen.net(z, None, torch.tensor([[0.5], [1.0]]))
        alone = [gen.net(z[i:i + 1], None, torch.tensor([[p]])) for i, p in enumerate((.5, 1))]
    assert torch.allclose(mixed, torch.cat(alone), atol=1e-5)


# ---- reading without running ----------------------------------------------------------------

def _marker_pickle() -> tuple[bytes, bytes]:
    """The orig fixture with its module source replaced by code that creates the file ``ran``
    in the working folder when run (as NVIDIA's loader runs it); same length, so the pickle's
    framing holds."""
    code = b"import pathlib;pathlib.Path('ran').touch()"
    code = code.ljust(len(STRIPPED) - 1, b"#") + b"\n"
    data = (FIXTURES / "sg2-orig-gray-8.pkl").read_bytes()
    assert data.count(STRIPPED) == 1  # pickled once, memoised for every class
    return data.replace(STRIPPED, code), code


def test_the_source_a_pickle_carries_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (data, code), marker = _marker_pickle(), tmp_path / "ran"
    exec(code)  # noqa: S102 - the planted source is live code
    assert marker.exists()
    marker.unlink()
    (tmp_path / "g.pkl").write_bytes(data)
    import_generator(tmp_path / "g.pkl", tmp_path / "g.pt")
    assert not marker.exists(), "the pickle's module source ran"
    gen = load_backend("torch", str(tmp_path / "g.pt"))
    assert differences(gen, "sg2-orig-gray-8")[0] <= 2  # and the weights still came through


class _System:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Storage:
    """Pickles as torch's storage rebuilder fed a torch.save file that runs a command."""

    def __init__(self, command: str):
        buffer = io.BytesIO()
        torch.save(_System(command), buffer)
        self.data = buffer.getvalue()

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.data,)


@pytest.mark.parametrize("payload,refused", [
    (lambda cmd: {"G_ema": _System(cmd)}, r"refused: the pickle asks for (posix|os)\.system"),
    (lambda cmd: {"G_ema": [_Storage(cmd)]},
     "refused: the pickle asks for a tensor storage holding more than tensor data"),
], ids=["global call", "storage bytes"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys, payload,
                                                                  refused):
    marker = tmp_path / "ran"
    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps(payload(f"touch {marker}")))
    assert cli_in_process("import", src, "--out", tmp_path / "m.pt") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(refused, err[0]), err
    assert not marker.exists() and not (tmp_path / "m.pt").exists()


class _Persistent:
    """Pickles as NVIDIA's persistent objects do (the allowed call), holding ``state``."""

    def __init__(self, state: dict):
        self.state = state

    def __reduce__(self):
        return _persistent_call, ({"class_name": "Generator", "state": self.state,
                                   "module_src": STRIPPED.decode()},)


def _persistent_call(meta):
    return meta


_persistent_call.__module__, _persistent_call.__qualname__ = ("torch_utils.persistence",
                                                              "_reconstruct_persistent_obj")
_persistent_call.__name__ = "_reconstruct_persistent_obj"


class _ForgedDType:
    """A numpy dtype with an object field whose flags deny holding objects."""

    def __reduce__(self):
        return (np.dtype, ("V8", False, True),
                (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))


class _ForgedArray:
    """An array of that dtype whose bytes are a forged object pointer 0x4141414141414141."""

    def __reduce__(self):
        return (np.core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (1,), _ForgedDType(), False, b"A" * 8))


def _dumps_with_persistence(obj) -> bytes:
    import sys
    import types

    module = types.ModuleType("torch_utils.persistence")
    module._reconstruct_persistent_obj = _persistent_call
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"),
                        "torch_utils.persistence": module})
    try:
        return pickle.dumps(obj, protocol=4)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@pytest.mark.parametrize("payload,refused", [
    (lambda: {"G_ema": _Persistent({"z_dim": _ForgedArray(), "_modules": {}})},
     "refused: the pickle asks for numpy dtype 'V8'"),
    (lambda: {"G_ema": _Persistent({"_parameters": {
        "weight": torch.zeros(1).expand(4096, 4096, 3, 3)}})},
     r"refused: the pickle asks for a tensor of shape \[4096, 4096, 3, 3\] over 4 bytes"),
    (lambda: {"G_ema": _Persistent({"_modules": [1, 2]})},
     "not a generator gantool can rebuild: 'list' object has no attribute 'get'"),
    (lambda: {"G_ema": _Persistent({"z_dim": "sixteen", "_modules": {
        "mapping": _Persistent({}), "synthesis": _Persistent({})}})},
     "not a stylegan2 generator gantool can rebuild: .*z_dim is 'sixteen', not a size"),
], ids=["forged object pointer", "zero-stride giant", "modules of another form", "a string size"])
def test_crafted_pickles_are_refused_in_one_line(tmp_path, capsys, payload, refused):
    """numpy's own rebuilders can be driven to forge object pointers (a segfault at best), a
    view can stand for terabytes, values can have any form: one line each, nothing written."""
    src = tmp_path / "crafted.pkl"
    src.write_bytes(_dumps_with_persistence(payload()))
    assert cli_in_process("import", src, "--out", tmp_path / "m.pt") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(refused, err[0]), err
    assert not (tmp_path / "m.pt").exists()


def test_a_torch_file_with_a_zero_stride_giant_is_refused(tmp_path, capsys):
    folder = tmp_path / "models" / "run"
    folder.mkdir(parents=True)
    torch.save({"GAN": {"GE.initial_conv.0.weight": torch.zeros(1).expand(4096, 4096, 3, 3)}},
               folder / "model_1.pt")
    assert cli_in_process("import", folder / "model_1.pt", "--out", tmp_path / "m.pt") == 2
    assert "refused: it holds a tensor of shape [4096, 4096, 3, 3]" in capsys.readouterr().err


# ---- bad input: one line, exit 2, nothing written --------------------------------------------

def _bad_sources(tmp: Path) -> dict[str, Path]:
    good = (FIXTURES / "sg2-skip-16.pkl").read_bytes()
    files = {
        "truncated": good[: len(good) // 2],
        "corrupt": good[:200] + bytes(1000) + good[1200:],
        "other pickle": pickle.dumps({"weights": [1, 2, 3]}),
        "list pickle": pickle.dumps([1, 2, 3]),
        "text": b"hello, not a network\n",
        "torch zip": None,
    }
    out = {}
    for name, data in files.items():
        path = tmp / (name.replace(" ", "-") + ".pkl")
        if data is None:
            torch.save({"G": {}}, path)
        else:
            path.write_bytes(data)
        out[name] = path
    out["discriminator only"] = FIXTURES / "discriminator-only.pkl"
    out["unexpected shapes"] = FIXTURES / "bad-shapes.pkl"
    return out


BAD = {
    "truncated": "is not a readable network pickle .*truncated or damaged",
    "corrupt": "is not a readable network pickle|refused",
    "other pickle": "holds no generator \\(weights\\)",
    "list pickle": "holds a list, not an NVIDIA network pickle",
    "text": "is not a generator file gantool imports",
    "torch zip": "is not a lightweight-gan or FastGAN-pytorch checkpoint .* it holds G\\)",
    "discriminator only": "holds only a discriminator",
    "unexpected shapes": "mapping.w_avg has shape \\[9\\], expected \\[8\\]",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_source_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    src = _bad_sources(tmp_path)[case]
    out = tmp_path / "out" / "m.pt"
    assert cli_in_process("import", src, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(BAD[case], err[0]), err[0]
    assert not out.exists() and not out.parent.exists()


def test_an_existing_file_is_kept_unless_forced(tmp_path, capsys):
    src, out = FIXTURES / "sg2-orig-gray-8.pkl", tmp_path / "m.pt"
    out.write_bytes(b"precious")
    assert cli_in_process("import", src, "--out", out) == 2
    assert "--out: " in capsys.readouterr().err and out.read_bytes() == b"precious"
    (tmp_path / "link.pt").symlink_to(tmp_path / "nowhere.pt")  # a dangling link names a file
    assert cli_in_process("import", src, "--out", tmp_path / "link.pt") == 2
    assert (tmp_path / "link.pt").is_symlink() and not (tmp_path / "nowhere.pt").exists()
    copy = tmp_path / "g.pkl"
    copy.write_bytes(src.read_bytes())
    assert cli_in_process("import", copy, "--out", tmp_path / "g.pkl") == 2  # not a .pt
    assert cli_in_process("import", src, "--out", out, "--force") == 0
    assert load_checkpoint(out)["origin"]["file"] == src.name


def test_an_unknown_or_wrong_kind_is_refused(tmp_path, capsys):
    r = gantool_cli("import", FIXTURES / "sg2-skip-16.pkl", "--out", tmp_path / "m.pt",
                    "--kind", "biggan")
    assert r.returncode == 2 and "'biggan' is not one of" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.pt").exists()
    assert cli_in_process("import", FIXTURES / "sg3-t-32.pkl", "--out", tmp_path / "m.pt",
                          "--kind", "stylegan2") == 2
    err = capsys.readouterr().err
    assert "--kind: stylegan2, but" in err and "holds a stylegan3 generator" in err, err
    assert not (tmp_path / "m.pt").exists()


def test_an_imported_generator_is_not_trained(imported, capsys):
    assert cli_in_process("train", "--resume", imported["sg2-skip-16"]) == 2
    assert "error: " in capsys.readouterr().err


# ---- through the other commands ---------------------------------------------------------------

@pytest.mark.slow
def test_cli_import_info_generate(tmp_path):
    src = FIXTURES / "sg2-cond-16.pkl"
    r = gantool_cli("import", src, "--out", tmp_path / "c.pt")
    assert r.returncode == 0 and "imported stylegan2, 16 px, z 12, 3 classes" in r.stdout, r
    r = gantool_cli("info", tmp_path / "c.pt")
    import hashlib

    assert hashlib.sha256(src.read_bytes()).hexdigest() in r.stdout and "stylegan" in r.stdout
    assert re.search(r"^truncation +none \(psi 1: the full prior\)$", r.stdout, re.M), r.stdout
    r = gantool_cli("generate", tmp_path / "c.pt", "--seeds", "85", "--truncation", "0.7",
                    "--class", "2", "--out", tmp_path / "imgs", "--no-progress")
    assert r.returncode == 0, r.stderr
    ref = np.asarray(Image.open(FIXTURES / "sg2-cond-16-seed85-psi0.7-class2.png")).astype(int)
    got = np.asarray(Image.open(tmp_path / "imgs" / "seed000085.png")).astype(int)
    assert np.abs(got - ref).max() <= 2


# every kind and architecture through ONNX Runtime (fastgan-256 adds time, not code paths)
ONNX_KINDS = [n for n in KINDS if n != "fastgan-256"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ONNX_KINDS)
def test_onnx_runtime_draws_the_tools_images(imported, tmp_path, name):
    from gantool.export import FORMATS
    from gantool.export.pipeline import export_checkpoint

    export_checkpoint(imported[name], tmp_path / "e", [FORMATS["onnx"]], log=lambda _: None,
                      fp16=True)
    for fp16, bound in ((False, 3), (True, 3)):  # the bound for ONNX Runtime
        gen = load_backend("onnx", str(tmp_path / "e"), fp16=fp16)
        worst, mean, count = differences(gen, name)
        print(f"{name} onnx{' fp16' if fp16 else ''}: {count} references, max {worst}/255, "
              f"mean {mean:.4f}/255")
        assert worst <= bound, (fp16, worst, mean)


def test_errors_name_the_file():
    with pytest.raises(GantoolError, match="does not exist"):
        import_generator(FIXTURES / "missing.pkl", FIXTURES / "never.pt")


@pytest.mark.slow
def test_triton_ensemble_draws_what_onnx_runtime_draws(imported, tmp_path):
    """The conditional fixture (class and psi inputs) served by a real tritonserver: the
    render ensemble (latent model -> z, one-hot class, psi -> generator) equals ONNX Runtime,
    and NVIDIA's references, for mixed truncations in one batch of requests."""
    from gantool.backends.triton_backend import TritonGenerator
    from gantool.serve.server import TritonServer, free_port

    r = gantool_cli("export", imported["sg2-cond-16"], "--out", tmp_path / "e", "--formats",
                    "onnx,triton", "--batch-profile", "1,4,8")
    assert r.returncode == 0, r.stderr
    # a TensorRT plan built on the serving machine gets a profile for every input (dry run)
    script = Path(__file__).parents[1] / "deploy" / "build_engine.sh"
    dry = subprocess.run(["bash", script, tmp_path / "e", "25.01", "1,4,8"], capture_output=True,
                         text=True, env={**os.environ, "DRY_RUN": "1"})
    assert dry.returncode == 0, dry.stderr
    assert "--maxShapes=z:8x12\\,class:8x3\\,truncation:8x1" in dry.stdout, dry.stdout
    onnx = load_backend("onnx", str(tmp_path / "e"))
    with TritonServer(tmp_path / "e" / "model_repository", free_port(), free_port()) as server:
        gen = TritonGenerator(server.grpc_url, request_batch=2, concurrency=3)
        try:
            assert (gen.prior, gen.classes) == ("stylegan", ("0", "1", "2"))
            seeds = [0, 85, 265, 7, 11]
            for psi, classes in ((0.7, [2, 0, 2, 1, 0]), (None, None), (-0.5, [0] * 5)):
                served = gen.generate(seeds, psi, classes)
                assert np.array_equal(served, onnx.generate(seeds, psi, classes)), psi
            assert differences(gen, "sg2-cond-16")[0] <= 3
        finally:
            gen.close()


def test_a_walk_applies_its_psi_and_starts_at_the_seeds_image(imported, tmp_path):
    """video's frames through an imported model: frame 0 is generate's image of the first seed
    at the walk's psi, and every frame is drawn at that psi (z unclipped)."""
    from gantool.sampling.video import WalkFrames
    from gantool.sampling.walk import make_walk

    gen = load_backend("torch", str(imported["sg2-skip-16"]))
    walk = make_walk([85, 265], 1, 4, gen.nz, gen.prior, 0.5)
    frames = WalkFrames(gen, walk).generate([0, 2, 4])
    assert np.array_equal(frames[0], gen.generate([85], 0.5)[0])
    assert np.array_equal(frames[2], gen.generate([265], 0.5)[0])
    assert np.abs(walk.latents([2])).max() > 0.5  # z between seeds is not clipped to psi
    assert not np.array_equal(frames[1], WalkFrames(gen, make_walk(
        [85, 265], 1, 4, gen.nz, gen.prior, None)).generate([2])[0])


def test_seeds_past_randomstates_range_are_refused_before_drawing(imported, tmp_path, capsys):
    out = tmp_path / "r"
    assert cli_in_process("generate", imported["sg2-skip-16"], "--seeds", "4294967290-4294967296",
                          "--out", out, "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --seeds: seed 4294967296 is above 4294967295, the largest seed of the "
                   "stylegan prior (numpy's RandomState, as NVIDIA's tools draw)"], err
    assert not out.exists()
