"""Images/s and latency through Triton (the CPU model repository) vs in-process ONNX Runtime.

One DCGAN generator (``--resolution``, ``--ngf``; random weights: speed does not depend on
them) is exported with gantool's own code to ONNX and to the CPU Triton repository (latent
python model + generator python model running ONNX Runtime + the render ensemble, dynamic
batching on). Each contender runs in its own fresh process:

* ``onnx``: ``OnnxGenerator.generate(seeds, truncation)`` in process, ``--batch`` seeds a call,
  one call after another: the baseline;
* ``triton``: a real ``tritonserver`` (started by ``TritonServer``, not timed) and ``--clients``
  threads, each with its own gRPC client, each sending requests of ``--batch`` seeds to the
  ``render`` ensemble back to back (seeds in, uint8 images out, as ``gantool render`` does);
* ``render``: ``TritonGenerator.generate`` (gantool render's client: ``--clients`` requests in
  flight) without writing files.

Reported: images/s (total images / wall time), per-request latency p50/p99, and the ratios
triton / onnx and render / onnx. Server and clients share the machine's cores with nothing
else; contenders alternate order over ``--repeats``.

    python benchmarks/serving.py                           # 64 px, ngf 64, batch 8, 4 clients
    python benchmarks/serving.py --resolution 256 --batch 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import loadavg, random_checkpoint, run_json, spread

CONTENDERS = ("onnx", "triton", "render")


def make_export(folder: Path, res: int, ngf: int, batch: int, clients: int) -> Path:
    """``folder/export`` with model.onnx, export.json and model_repository/."""
    from gantool.export import FORMATS
    from gantool.export.pipeline import export_checkpoint, write_summary
    from gantool.serve.repository import write_repository

    ckpt = random_checkpoint(folder / "ckpt", res, ngf)[0]
    out = folder / "export"
    result = export_checkpoint(ckpt, out, [FORMATS["onnx"]], log=lambda s: None)
    write_summary(out, result)
    top = max(batch * clients, batch)  # all clients' requests fit one dynamic batch
    write_repository(out, "cpu", (1, batch, top))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def worker(args) -> dict:
    if args.worker == "onnx":
        from gantool.backends.onnx_backend import OnnxGenerator

        gen = OnnxGenerator(args.export)
        return _loop(lambda seeds: gen.generate(seeds, 0.5), args, clients=1)
    from gantool.serve.server import TritonServer, free_port

    with TritonServer(Path(args.export) / "model_repository", free_port(), free_port()) as s:
        if args.worker == "render":
            from gantool.serve.client import TritonGenerator

            gen = TritonGenerator(s.grpc_url, request_batch=args.batch,
                                  concurrency=args.clients)
            try:
                return _loop(lambda seeds: gen.generate(seeds, 0.5), args, clients=1,
                             per_call=gen.batch_size)
            finally:
                gen.close()
        import numpy as np
        import tritonclient.grpc as grpcclient

        def call_factory():
            client = grpcclient.InferenceServerClient(s.grpc_url)

            def call(seeds):
                a = grpcclient.InferInput("seed", [len(seeds), 1], "INT64")
                a.set_data_from_numpy(np.asarray(seeds, np.int64).reshape(-1, 1))
                b = grpcclient.InferInput("truncation", [len(seeds), 1], "FP32")
                b.set_data_from_numpy(np.full((len(seeds), 1), 0.5, np.float32))
                return client.infer("render", [a, b]).as_numpy("image")
            return call

        return _loop(None, args, clients=args.clients, factory=call_factory)


def _loop(call, args, clients: int, factory=None, per_call: int | None = None) -> dict:
    """``clients`` threads calling back to back until ``args.images`` images are done."""
    per_call = per_call or args.batch
    calls = max(1, args.images // per_call)
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(calls))

    def run(fn):
        for _ in range(args.warmup):
            fn(list(range(per_call)))
        barrier.wait()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            seeds = list(range(i * per_call, (i + 1) * per_call))
            t0 = time.perf_counter()
            out = fn(seeds)
            dt = time.perf_counter() - t0
            assert out.shape[0] == per_call
            with lock:
                latencies.append(dt)

    barrier = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=run, args=(factory() if factory else call,))
               for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"images_per_s": calls * per_call / wall, "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * percentile(latencies, 99), "requests": calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="seeds per request / per call")
    ap.add_argument("--clients", type=int, default=4, help="concurrent Triton clients")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--export", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"load average before: {loadavg()}")
    t0, runs = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        export = make_export(Path(tmp), args.resolution, args.ngf, args.batch, args.clients)
        for r in range(args.repeats):
            row = {}
            for name in CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]:
                argv = [sys.executable, __file__, "--worker", name, "--export", str(export)]
                for key in ("batch", "clients", "images", "warmup"):
                    argv += [f"--{key}", str(getattr(args, key))]
                row[name] = run_json(argv, name)
            for name in ("triton", "render"):
                row[f"{name}/onnx"] = row[name]["images_per_s"] / row["onnx"]["images_per_s"]
            runs.append(row)
    print(f"{args.resolution} px, ngf {args.ngf}, batch {args.batch}, {args.clients} clients, "
          f"{args.images} images, {args.repeats} repeats (medians, min-max)")
    for name in CONTENDERS:
        ips, p50, p99 = (spread([r[name][k] for r in runs])[0]
                         for k in ("images_per_s", "p50_ms", "p99_ms"))
        print(f"  {name:7s} {ips:9.1f} img/s   latency p50 {p50:8.1f} ms   p99 {p99:8.1f} ms")
    for name in ("triton", "render"):
        m, lo, hi = spread([r[f"{name}/onnx"] for r in runs])
        print(f"  ratio {name}/onnx median {m:.2f}x ({lo:.2f}-{hi:.2f})")
    print(f"load average after: {loadavg()}  (wall {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
