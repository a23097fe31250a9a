"""Triton: the model repository, a real tritonserver (the CPU variant), `gantool serve` and
`gantool render`, and requests the server must refuse while it keeps serving."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gantool import latent as latent_module
from gantool.backends.onnx_backend import OnnxGenerator
from gantool.backends.triton_backend import TritonGenerator
from gantool.errors import GantoolError, PartialBatch
from gantool.export.triton import generator_config, parse_pbtxt, to_pbtxt, write_repository
from gantool.serve.server import TritonServer, free_port

from conftest import CTRL_C_ABLE, gantool_cli, tiny_config

pytestmark = pytest.mark.slow  # the whole module: make test-fast skips it

BATCH = (1, 4, 16)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A tiny uniform-prior generator (Marchesi's prior, default truncation 0.5), exported with
    the CPU Triton repository through the real CLI."""
    from gantool.train.loop import run

    root = tmp_path_factory.mktemp("triton")
    cfg = tiny_config(**{"train.steps": 4, "train.checkpoint_every": 4, "model.prior": "uniform",
                         "model.truncation": 0.5})
    ckpt = run(cfg, out=root / "runs", progress=False).run_dir / "checkpoints" / "last.pt"
    out = root / "export"
    r = gantool_cli("export", ckpt, "--out", out, "--formats", "onnx,triton", "--fp16",
                    "--batch-profile", ",".join(map(str, BATCH)))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out / 'model_repository'}" in r.stdout
    return out


@pytest.fixture(scope="module")
def server(export_dir):
    with TritonServer(export_dir / "model_repository", free_port(), free_port()) as s:
        yield s


def _onnx_images(export_dir, seeds, truncation):
    return OnnxGenerator(str(export_dir)).generate(seeds, truncation)


def _folder_images(folder, seeds, stem="seed"):
    return np.stack([np.asarray(Image.open(folder / f"{stem}{s:06d}.png")) for s in seeds])


def _close_enough(a, b):
    """The issue's bar: at most 1 level apart, on under 0.1% of the pixels."""
    diff = np.abs(a.astype(int) - b.astype(int))
    return diff.max() <= 1 and (diff > 0).mean() < 0.001


# -- the repository ------------------------------------------------------------------------

def test_repository_configs_parse_and_match_the_onnx_model(export_dir):
    import onnx

    repo = export_dir / "model_repository"
    configs = {name: parse_pbtxt((repo / name / "config.pbtxt").read_text())
               for name in ("latent", "generator", "render")}
    model = onnx.load(str(export_dir / "model.onnx"))
    (z,), (image,) = model.graph.input, model.graph.output
    z_dims = [d.dim_value for d in z.type.tensor_type.shape.dim[1:]]
    image_dims = [d.dim_value for d in image.type.tensor_type.shape.dim[1:]]
    assert z_dims == [100] and image_dims == [28, 28, 1]
    gen = configs["generator"]
    assert gen.backend == "python" and gen.max_batch_size == BATCH[2]
    assert [(t.name, list(t.dims)) for t in gen.input] == [(z.name, z_dims)]
    assert [(t.name, list(t.dims)) for t in gen.output] == [(image.name, image_dims)]
    assert list(gen.dynamic_batching.preferred_batch_size) == [4, 16]
    assert gen.model_warmup[0].inputs["z"].zero_data
    latent = configs["latent"]
    assert [t.name for t in latent.output] == ["z"] and list(latent.output[0].dims) == z_dims
    assert latent.parameters["prior"].string_value == "uniform"
    assert latent.parameters["default_truncation"].string_value == "0.5"
    render_cfg = configs["render"]
    assert render_cfg.platform == "ensemble"
    steps = render_cfg.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["latent", "generator"]
    assert list(render_cfg.output[0].dims) == image_dims
    # the very file the CLI uses, byte for byte
    assert (repo / "latent" / "1" / "latent.py").read_bytes() == \
        open(latent_module.__file__, "rb").read()
    assert (repo / "generator" / "1" / "model.onnx").read_bytes() == \
        (export_dir / "model.onnx").read_bytes()
    assert "gantool serve" in (repo / "README.md").read_text()
    # readable by a server that runs as another user, as the files in it are
    mask = os.umask(0)
    os.umask(mask)
    for path in (repo, repo / "latent", repo / "generator" / "1" / "model.onnx"):
        assert path.stat().st_mode & 0o777 == (0o777 if path.is_dir() else 0o666) & ~mask


def test_gpu_variant_configs_parse_with_the_same_io(export_dir, tmp_path):
    work = tmp_path / "export"
    shutil.copytree(export_dir, work, ignore=shutil.ignore_patterns("model_repository"))
    repo = write_repository(work, "gpu", BATCH, instances=2, accelerator="tensorrt", fp16=True)
    cpu = parse_pbtxt((export_dir / "model_repository" / "generator" / "config.pbtxt").read_text())
    gen = parse_pbtxt((repo / "generator" / "config.pbtxt").read_text())
    assert gen.platform == "onnxruntime_onnx" and gen.default_model_filename == "model_fp16.onnx"
    assert (repo / "generator" / "1" / "model_fp16.onnx").is_file()
    assert gen.instance_group[0].kind == gen.instance_group[0].KIND_GPU
    assert gen.instance_group[0].count == 2
    accel = gen.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP16"
    assert list(gen.input) == list(cpu.input) and list(gen.output) == list(cpu.output)
    # a TensorRT plan is built from the same ONNX graph: same tensor names and shapes
    plan = parse_pbtxt(to_pbtxt(generator_config("plan", 100, [28, 28, 1], BATCH)))
    assert plan.platform == "tensorrt_plan" and plan.default_model_filename == "model.plan"
    assert list(plan.input) == list(cpu.input) and list(plan.output) == list(cpu.output)
    assert plan.model_warmup[0].batch_size == BATCH[1]
    latent = parse_pbtxt((repo / "latent" / "config.pbtxt").read_text())
    assert latent.instance_group[0].kind == latent.instance_group[0].KIND_CPU


def test_config_parser_rejects_what_triton_would(export_dir):
    text = (export_dir / "model_repository" / "generator" / "config.pbtxt").read_text()
    from google.protobuf.text_format import ParseError

    with pytest.raises(ParseError, match="dimz"):
        parse_pbtxt(text.replace("dims:", "dimz:", 1))
    with pytest.raises(ParseError, match="KIND_CPUS"):
        parse_pbtxt(text.replace("KIND_CPU", "KIND_CPUS"))


@pytest.mark.parametrize("args, message", [
    (["--triton-variant", "tpu"], "'tpu' is not one of 'cpu', 'gpu'"),
    (["--triton-accelerator", "tensorrt"], "applies to the gpu variant"),
    (["--output", "float"], "serves uint8 images"),
    (["--triton-instances", "0"], "at least 1"),
])
def test_export_triton_option_errors(tiny_ckpt, tmp_path, args, message):
    r = gantool_cli("export", tiny_ckpt, "--out", tmp_path / "x", "--formats", "triton", *args)
    assert r.returncode == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


# -- the live server --------------------------------------------------------------------------

@pytest.mark.parametrize("protocol, shm", [("grpc", "on"), ("http", "on"), ("grpc", "off"),
                                           ("http", "off")])
def test_render_equals_generate_with_onnx(server, export_dir, tmp_path, protocol, shm):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    seeds = list(range(37))  # not a multiple of the request size: a short last request
    r = gantool_cli("render", "--url", url, "--protocol", protocol, "--seeds", "0-36",
                    "--truncation", "0.5", "--out", tmp_path / "r", "--batch-size", "3",
                    "--concurrency", "4", "--no-progress", "--shared-memory", shm)
    assert r.returncode == 0, r.stderr
    transport = "shared memory" if shm == "on" else "wire"
    assert "wrote 37 image(s)" in r.stdout and f"images by {transport})" in r.stdout
    g = gantool_cli("generate", export_dir, "--backend", "onnx", "--seeds", "0-36",
                    "--truncation", "0.5", "--out", tmp_path / "g", "--no-progress")
    assert g.returncode == 0, g.stderr
    assert _close_enough(_folder_images(tmp_path / "r", seeds),
                         _folder_images(tmp_path / "g", seeds))
    rows = [json.loads(line) for line in (tmp_path / "r" / "manifest.jsonl").open()]
    assert sorted(row["seed"] for row in rows) == seeds
    assert {row["backend"] for row in rows} == {f"triton-{protocol}"}
    onnx_rows = [json.loads(line) for line in (tmp_path / "g" / "manifest.jsonl").open()]
    assert {row["weights_sha256"] for row in rows + onnx_rows} == {
        onnx_rows[0]["weights_sha256"]}  # the server names the model its export does
    again = gantool_cli("render", "--url", url, "--protocol", protocol, "--seeds", "0-39",
                        "--truncation", "0.5", "--out", tmp_path / "r", "--no-progress")
    assert again.returncode == 0 and "wrote 3 image(s)" in again.stdout
    assert "skipped 37 already there" in again.stdout


def test_default_truncation_and_plain_prior_match_onnx(server, export_dir):
    gen = TritonGenerator(server.grpc_url, request_batch=5, concurrency=2)
    try:
        assert (gen.resolution, gen.channels, gen.nz, gen.prior) == (28, 1, 100, "uniform")
        assert gen.default_truncation == 0.5
        seeds = list(range(100, 111))
        for t in (0.25, None):
            assert _close_enough(gen.generate(seeds, t), _onnx_images(export_dir, seeds, t))
    finally:
        gen.close()


def test_explore_through_triton_draws_what_render_writes(server, tmp_path):
    """gantool explore --url: the page's images, at the model's default truncation and at
    none (the plain prior), are the bytes gantool render writes with the page's command."""
    pytest.importorskip("starlette", reason="the explore extra is not installed")
    from conftest import explore_server

    with explore_server("--url", server.grpc_url) as url:
        info = json.loads(urllib.request.urlopen(url + "api/info", timeout=60).read())
        assert info["backend"] == "triton-grpc" and info["default_truncation"] == 0.5
        for t in ("", "none"):
            page = json.loads(urllib.request.urlopen(
                f"{url}api/grid?start=40&count=3&truncation={t}", timeout=60).read())
            png = urllib.request.urlopen(f"{url}api/image.png?seed=41&truncation={t}",
                                         timeout=60).read()
            command = page["commands"]["41"].split()
            assert command[:2] == ["gantool", "render"] and ("--truncation" in command) == bool(t)
            out = tmp_path / f"render{t}"
            r = gantool_cli(*command[1:-2], "--out", out, "--no-progress")
            assert r.returncode == 0, r.stderr
            assert (out / "seed000041.png").read_bytes() == png


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_video_frames_through_the_generator_model(server, export_dir, tmp_path, protocol):
    """`gantool video --url`: z goes straight to the `generator` model; keyframes are the seeds'
    images from ONNX Runtime, a uniform walk stays inside the truncation box, and the mp4
    holds every frame."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    walk = ["--url", url, "--protocol", protocol, "--seeds", "0-5", "--grid", "2x1",
            "--frames-per-seed", "4", "--truncation", "0.4", "--batch-size", "6", "--no-progress"]
    r = gantool_cli("video", *walk, "--frames-dir", tmp_path / "f")
    assert r.returncode == 0 and "wrote 12 frame(s)" in r.stdout, r.stderr
    frames = _folder_images(tmp_path / "f", range(12), "frame")  # (12, 28, 56)
    seeds = _onnx_images(export_dir, list(range(6)), 0.4)[..., 0]  # walk 0: 0-2, walk 1: 3-5
    for k in range(3):
        assert _close_enough(frames[4 * k, :, :28], seeds[k])
        assert _close_enough(frames[4 * k, :, 28:], seeds[3 + k])
    rows = [json.loads(line) for line in (tmp_path / "f" / "manifest.jsonl").open()]
    assert {row["backend"] for row in rows} == {f"triton-{protocol}"}
    gen = TritonGenerator(url, protocol)
    try:
        z = np.linspace(-0.4, 0.4, 5 * gen.nz, dtype=np.float32).reshape(5, gen.nz)
        onnx = OnnxGenerator(str(export_dir)).generate_z(z)
        assert _close_enough(gen.generate_z(z), onnx)
    finally:
        gen.close()
    r = gantool_cli("video", *walk, "--out", tmp_path / "w.mp4")
    assert r.returncode == 0 and "12 frames of 56x28" in r.stdout, r.stderr
    import imageio_ffmpeg

    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "w.mp4"))[0] == 12


def _infer(url, seeds, truncations, seed_dtype="INT64", seed_shape=None):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    seeds = np.asarray(seeds, dtype=np.int64 if seed_dtype == "INT64" else np.float32)
    seeds = seeds.reshape(seed_shape or (-1, 1))
    truncations = np.asarray(truncations, dtype=np.float32).reshape(-1, 1)
    a = grpcclient.InferInput("seed", list(seeds.shape), seed_dtype)
    a.set_data_from_numpy(seeds)
    b = grpcclient.InferInput("truncation", list(truncations.shape), "FP32")
    b.set_data_from_numpy(truncations)
    return client.infer("render", [a, b]).as_numpy("image")


@pytest.mark.parametrize("seeds, truncations, kwargs, message", [
    ([0, 1], [0.5, 0.5], {"seed_dtype": "FP32"}, "FP32"),
    ([0, 1, 2, 3], [0.5, 0.5], {"seed_shape": (2, 2)}, "shape"),
    (list(range(17)), [0.5] * 17, {}, "batch"),
    ([3, -1], [0.5, 0.5], {}, "seed -1 is outside"),
    ([3, 4], [0.5, 0.0], {}, "truncation must be a positive number"),
    ([3, 4], [1.5, 0.5], {}, "above the uniform prior's bound 1"),
])
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(
        server, export_dir, seeds, truncations, kwargs, message):
    from tritonclient.utils import InferenceServerException

    good = _onnx_images(export_dir, [7, 8], 0.5)
    results: dict[str, object] = {}

    def good_request():  # in flight beside the bad one, possibly batched with it
        results["good"] = _infer(server.grpc_url, [7, 8], [0.5, 0.5])

    thread = threading.Thread(target=good_request)
    thread.start()
    with pytest.raises(InferenceServerException) as info:
        _infer(server.grpc_url, seeds, truncations, **kwargs)
    thread.join()
    assert message in str(info.value)
    assert _close_enough(results["good"], good)
    assert server.ready() and server.process.poll() is None
    assert _close_enough(_infer(server.grpc_url, [7, 8], [0.5, 0.5]), good)


def test_failed_seed_ranges_are_reported_and_the_render_carries_on(server, export_dir,
                                                                   tmp_path):
    gen = TritonGenerator(server.grpc_url, request_batch=4, concurrency=3)
    try:
        with pytest.raises(PartialBatch) as info:
            gen.generate([0, 1, 2, 3, 4, -5, 6, 7, 8, 9, 10, 11], 0.5)
        e = info.value
        assert e.seeds == [0, 1, 2, 3, 8, 9, 10, 11]
        assert [(lo, hi) for lo, hi, _ in e.failures] == [(4, 7)]
        assert "seed -5 is outside" in e.failures[0][2]
        assert _close_enough(e.images, _onnx_images(export_dir, e.seeds, 0.5))
        from gantool.sampling.pipeline import render_seeds

        stats = render_seeds(gen, [0, 1, 2, 3, 4, -5, 6, 7, 8, 9], 0.5, 8, tmp_path,
                             progress=False)
        assert stats["failed"] == 4 and stats["written"] == 6
        assert sorted(p.name for p in tmp_path.glob("*.png")) == \
            [f"seed{s:06d}.png" for s in (0, 1, 2, 3, 8, 9)]
    finally:
        gen.close()


def test_render_retries_while_the_server_restarts(export_dir, tmp_path):
    """With the default retry budget (60 s) a render waits out a server that is down for 15 s
    and then starts again; a server gone for good fails each request once the budget is spent."""
    http, grpc = free_port(), free_port()
    repo = export_dir / "model_repository"
    first = TritonServer(repo, http, grpc)
    first.start()
    gen = TritonGenerator(first.grpc_url, request_batch=4, concurrency=2, timeout=20)
    first.stop()  # gone: the next requests fail until it is back
    second = TritonServer(repo, http, grpc)
    down = time.monotonic()
    restart = threading.Thread(target=lambda: (time.sleep(15), second.start()))
    try:
        restart.start()
        images = gen.generate(list(range(8)), 0.5)  # retried until the server is back
        restart.join()
        print(f"server down for {time.monotonic() - down:.1f} s; the render waited it out")
        assert _close_enough(images, _onnx_images(export_dir, list(range(8)), 0.5))
        second.stop()  # down for good: each request gives up after its retries
        gen.retry_for, gen.backoff = 1.0, 0.05
        with pytest.raises(PartialBatch, match="seeds 0-3 failed") as info:
            gen.generate(list(range(8)), 0.5)
        assert [(lo, hi) for lo, hi, _ in info.value.failures] == [(0, 3), (4, 7)]
    finally:
        restart.join()
        second.stop()
        gen.close()


def test_shared_memory_render_carries_on_across_a_server_restart(export_dir, tmp_path):
    """The restarted server has forgotten the render's registered slots: they are registered
    again as part of the retries, and every image still arrives through shared memory."""
    from gantool.sampling.pipeline import render_seeds

    http, grpc = free_port(), free_port()
    repo = export_dir / "model_repository"
    first = TritonServer(repo, http, grpc)
    first.start()
    second = TritonServer(repo, http, grpc)
    gen = TritonGenerator(first.grpc_url, request_batch=4, concurrency=2, retries=8,
                          backoff=0.5, timeout=20)
    assert gen.transport == "shared memory"
    out, seeds = tmp_path / "r", list(range(3000))

    def restart():
        while len(list(out.glob("*.png"))) < 200:
            time.sleep(0.02)
        first.stop()
        second.start()

    thread = threading.Thread(target=restart)
    try:
        thread.start()
        stats = render_seeds(gen, seeds, 0.5, gen.batch_size, out, progress=False)
        thread.join()
        assert second.ready(), "the render finished before the restart: give it more seeds"
        assert stats["written"] == len(seeds) and stats["failed"] == 0
        some = seeds[::250]
        assert _close_enough(_folder_images(out, some),
                             _onnx_images(export_dir, some, 0.5)[..., 0])
    finally:
        thread.join()
        first.stop()
        second.stop()
        gen.close()


def _group(pgid: int) -> list[int]:
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(d.name)) == pgid:
                found.append(int(d.name))
        except OSError:
            pass
    return found


def test_a_server_killed_with_9_leaves_no_process_or_shared_memory(export_dir):
    """kill -9 of tritonserver: its python-backend stubs (here stopped, so that they cannot
    notice) and their /dev/shm regions are gone once gantool stops the server."""
    from gantool.serve.server import SHM, _backend_regions

    server = TritonServer(export_dir / "model_repository", free_port(), free_port())
    before = _backend_regions()
    server.start()
    pid = server.process.pid
    try:
        stubs = [p for p in _group(pid) if p != pid]
        assert stubs, "the python backend runs its models in stub processes"
        for stub in stubs:
            os.kill(stub, signal.SIGSTOP)
        os.kill(pid, signal.SIGKILL)
        code = server.process.wait()
        assert server.exit_reason(code) == "killed by SIGKILL"
        left = _backend_regions() - before
        assert left, "a killed server leaves its regions in /dev/shm"
    finally:
        server.stop()
    assert _group(pid) == []
    assert not [r for r in left if (SHM / r).exists()]


# -- the commands ------------------------------------------------------------------------

def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_serve_command_starts_serves_and_stops_on_ctrl_c(export_dir, tmp_path):
    http, grpc = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gantool", "serve", export_dir / "model_repository",
         "--http-port", str(http), "--grpc-port", str(grpc)],
        stderr=subprocess.PIPE, text=True, **CTRL_C_ABLE)
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if "Triton ready" in line or process.poll() is not None:
                break
        assert "Triton ready" in lines[-1], "".join(lines)
        assert "models: generator, latent, render" in lines[-1]
        assert not any("CUDA" in ln for ln in lines), "CPU-host noise is hidden"
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready") as response:
            assert response.status == 200
        r = gantool_cli("render", "--url", f"127.0.0.1:{grpc}", "--seeds", "0-5", "--out",
                        tmp_path / "r", "--no-progress")
        assert r.returncode == 0, r.stderr
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "Triton stopped" in rest
    assert not _port_open(http) and not _port_open(grpc), "tritonserver is gone"


def test_a_repository_under_a_path_with_a_space_and_an_accent_serves(export_dir, tmp_path):
    """Triton breaks on such paths ("stol" after its whole timeout, or a UnicodeEncodeError in
    the python backend); gantool hands it a plain link and the images are the same."""
    repo = tmp_path / "my models" / "modèle" / "model_repository"
    shutil.copytree(export_dir / "model_repository", repo)
    with TritonServer(repo, free_port(), free_port()) as server:
        got = TritonGenerator(server.grpc_url).generate([0, 1, 2], 0.5)
    assert np.array_equal(got, _onnx_images(export_dir, [0, 1, 2], 0.5))


def test_serve_names_a_model_that_fails_to_load(export_dir, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(export_dir / "model_repository", repo)
    (repo / "generator" / "1" / "model.onnx").write_bytes(b"not an onnx model")
    r = gantool_cli("serve", repo, "--http-port", free_port(), "--grpc-port", free_port())
    assert r.returncode == 2, r.stderr
    error = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "could not load model 'generator'" in error[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_python_model_that_raises_is_named_without_its_stack(export_dir, tmp_path):
    """Triton's reason for a python-backend model carries the Python stack, one frame a line:
    the error keeps the message and the model's own frame, on one line."""
    repo = tmp_path / "repo"
    shutil.copytree(export_dir / "model_repository", repo)
    code = repo / "latent" / "1" / "model.py"
    code.write_text(code.read_text().replace(
        "    def initialize(self, args):",
        "    def initialize(self, args):\n        import json; json.loads('{bad')", 1))
    r = gantool_cli("serve", repo, "--http-port", free_port(), "--grpc-port", free_port())
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Triton could not load model 'latent': ") and \
        "JSONDecodeError: Expecting property name" in last, r.stderr
    assert re.search(r"\(at \S+latent/1/model\.py\(\d+\): initialize\)$", last), last
    assert "At:" not in r.stderr.split("error: ")[-1]


def test_serve_and_render_user_errors_are_one_line(server, export_dir, tmp_path):
    busy = gantool_cli("serve", export_dir / "model_repository", "--http-port",
                       server.http_port, "--grpc-port", free_port())
    not_repo = gantool_cli("serve", tmp_path, "--http-port", free_port())
    (tmp_path / "file").write_text("x")
    cases = [
        (busy, f"port {server.http_port} on 127.0.0.1 is in use"),
        (not_repo, "is not a gantool model repository"),
        (gantool_cli("render", "--url", f"127.0.0.1:{free_port()}", "--out", tmp_path / "a"),
         "cannot reach Triton"),
        (gantool_cli("render", "--url", server.grpc_url, "--truncation", "2", "--out",
                     tmp_path / "b"), "above the uniform prior's bound 1"),
        (gantool_cli("render", "--url", server.grpc_url, "--seeds", "5-1", "--out",
                     tmp_path / "c"), "runs backwards"),
        (gantool_cli("render", "--url", server.grpc_url, "--out", tmp_path / "file"),
         "is a file"),
        (gantool_cli("render", "--url", server.grpc_url, "--protocol", "udp", "--out",
                     tmp_path / "d"), "'udp' is not one of 'grpc', 'http'"),
    ]
    for r, message in cases:
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_gantool_error_when_no_server_binary(monkeypatch, export_dir):
    """Without tritonserver on PATH and without nvidia-pytriton: a one-line install hint."""
    import importlib.util

    monkeypatch.setenv("PATH", "/nonexistent")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytriton" else real(name, *a))
    with pytest.raises(GantoolError, match="pip install 'gantool\\[serve\\]'"):
        TritonServer(export_dir / "model_repository", free_port(), free_port()).start()


# -- deployment assets -----------------------------------------------------------------------

def test_compose_and_kubernetes_manifests_agree_with_the_repository():
    import re
    from pathlib import Path

    import yaml

    from gantool.export.triton import TRITON_RELEASE
    from gantool.serve.server import PYTHON_BACKEND_ARGS

    root = Path(__file__).resolve().parents[1]
    compose = yaml.safe_load((root / "deploy" / "docker-compose.yml").read_text())
    triton = compose["services"]["triton"]
    image = f"nvcr.io/nvidia/tritonserver:${{TRITON_RELEASE:-{TRITON_RELEASE}}}-py3"
    assert triton["image"] == image
    assert "--model-repository=/models" in triton["command"]
    assert set(PYTHON_BACKEND_ARGS) <= set(triton["command"]), "megapixel tensors in the stubs"
    assert any(v.endswith(":/models:ro") for v in triton["volumes"])
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    build = (root / "deploy" / "build_engine.sh").read_text()
    assert re.search(r"release=\$\{2:-(\S+)\}", build).group(1) == TRITON_RELEASE, \
        "engines are built with the TensorRT of the Triton release that serves them"

    k8s = root / "deploy" / "k8s"
    deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
    service = yaml.safe_load((k8s / "service.yaml").read_text())
    hpa = yaml.safe_load((k8s / "hpa.yaml").read_text())
    yaml.safe_load((k8s / "prometheus-adapter-rule.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert set(PYTHON_BACKEND_ARGS) <= set(container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/models", "/dev/shm"} <= mounts


def test_rewriting_a_repository_replaces_it_whole(export_dir, tmp_path):
    work = tmp_path / "export"
    shutil.copytree(export_dir, work)
    (work / ".model_repository.old").mkdir()  # left behind by an interrupted export
    (work / ".model_repository.old" / "junk").write_text("x")
    (work / "model_repository" / "stray.txt").write_text("from before")
    repo = write_repository(work, "cpu", (1, 2, 8))
    assert not (repo / "stray.txt").exists() and not (work / ".model_repository.old").exists()
    gen = parse_pbtxt((repo / "generator" / "config.pbtxt").read_text())
    assert gen.max_batch_size == 8
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


def test_port_check_speaks_ipv6_and_names_what_is_wrong():
    """The check before Triton starts: a free port on ::1 passes (it used to be called "in
    use"), a taken port and an address this machine does not have are one line each."""
    from gantool.cli.main import user_message
    from gantool.serve.server import _check_port_free

    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(GantoolError) as e:
            _check_port_free("::1", port, "grpc_port")
        assert re.match(f"port {port} on ::1 is in use; pick another with --grpc-port",
                        user_message(e.value, "serve"))
    _check_port_free("::1", free_port("::1"), "grpc_port")  # free: no error
    with pytest.raises(GantoolError, match="cannot listen on 192.0.2.1 port 8000: "):
        _check_port_free("192.0.2.1", 8000, "http_port")  # TEST-NET-1: nobody's address
    server = TritonServer(Path("repo"), 8000, 8001, host="::1")
    assert server.grpc_url == "[::1]:8001" and server.http_url == "[::1]:8000"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_serve_on_ipv6_loopback_renders(export_dir, tmp_path):
    """Triton joins address and port with a ':' itself, so ::1 must reach it bracketed for
    gRPC and as ipv6:::1 for HTTP; both protocols then serve."""
    with TritonServer(export_dir / "model_repository", free_port("::1"), free_port("::1"),
                      host="::1") as server:
        for url, protocol in ((server.grpc_url, "grpc"), (server.http_url, "http")):
            r = gantool_cli("render", "--url", url, "--protocol", protocol, "--seeds", "0-3",
                            "--out", tmp_path / protocol, "--no-progress")
            assert r.returncode == 0 and "wrote 4 image(s)" in r.stdout, r.stderr


def test_one_port_for_two_protocols_is_refused_before_starting(export_dir):
    from gantool.cli.main import user_message

    port = free_port()
    with pytest.raises(GantoolError) as e:
        TritonServer(export_dir / "model_repository", port, port).check()
    assert re.search(f"--http-port and --grpc-port are both {port}",
                     user_message(e.value, "serve"))
