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

``--transport`` measures instead how a render's images arrive, the draw half of
``gantool render`` (``sampling/pipeline.py``): each call reserves a slot of the render's
``ImageWriter`` (shared memory) and fills it, nothing is encoded. ``draw-onnx``: ONNX Runtime in
process, its output copied into the slot; ``draw-grpc`` / ``draw-http``: ``TritonGenerator``
over the wire, the decoded images copied into the slot; ``draw-shm``: ``TritonGenerator`` with
Triton's system shared memory, the server writing into the slot itself. Reported: images/s,
MB/s of images, and each Triton transport / draw-onnx. Use a cheap generator (``--ngf 4``) so
that moving the bytes, not the network, is what costs.

    python benchmarks/serving.py                           # 64 px, ngf 64, batch 8, 4 clients
    python benchmarks/serving.py --resolution 256 --batch 4 --json out.json
    python benchmarks/serving.py --transport --resolution 1024 --ngf 4 --batch 4 --clients 4 \
        --max-batch 4 --images 96
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
TRANSPORTS = ("draw-onnx", "draw-grpc", "draw-http", "draw-shm")


def make_export(folder: Path, res: int, ngf: int, batch: int, clients: int,
                max_batch: int = 0) -> Path:
    """``folder/export`` with model.onnx, export.json and model_repository/."""
    from gantool.export import FORMATS
    from gantool.export.pipeline import export_checkpoint
    from gantool.export.triton import write_repository

    ckpt = random_checkpoint(folder / "ckpt", res, ngf)[0]
    out = folder / "export"
    export_checkpoint(ckpt, out, [FORMATS["onnx"]], log=lambda s: None)
    top = max_batch or batch * clients  # default: all clients' requests fit one dynamic batch
    write_repository(out, "cpu", (1, min(batch, top), top))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def worker(args) -> dict:
    if args.worker.startswith("draw-"):
        return draw(args)
    if args.worker == "onnx":
        from gantool.backends.onnx_backend import OnnxGenerator

        gen = OnnxGenerator(args.export)
        return _loop(lambda seeds: gen.generate(seeds, 0.5), args, clients=1)
    from gantool.serve.server import TritonServer, free_port

    with TritonServer(Path(args.export) / "model_repository", free_port(), free_port()) as s:
        if args.worker == "render":
            from gantool.backends.triton_backend import TritonGenerator

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


def draw(args) -> dict:
    """The draw half of a render into the writer's shared-memory slots (see the module doc)."""
    from gantool.sampling.images import Encoding
    from gantool.sampling.writer import ImageWriter

    def run(gen, per_call: int) -> dict:
        shape = (gen.resolution, gen.resolution, gen.channels)
        writer = ImageWriter(Path(args.export) / "unused", Encoding("npy"), per_call, shape,
                             workers=1, parallel="thread")
        try:
            def call(seeds):
                out = writer.reserve(len(seeds))
                if hasattr(gen, "generate_into"):
                    gen.generate_into(seeds, 0.5, out)
                else:
                    out[:] = gen.generate(seeds, 0.5)
                writer.commit([], out)  # frees the slot: nothing is written
                return out
            res = _loop(call, args, clients=1, per_call=per_call)
        finally:
            writer.close()
        return {**res, "mb_per_s": res["images_per_s"] * np.prod(shape) / 1e6}

    import numpy as np

    if args.worker == "draw-onnx":
        from gantool.backends.onnx_backend import OnnxGenerator

        return run(OnnxGenerator(args.export), args.batch * args.clients)
    from gantool.backends.triton_backend import TritonGenerator
    from gantool.serve.server import TritonServer, free_port

    with TritonServer(Path(args.export) / "model_repository", free_port(), free_port()) as s:
        protocol = "http" if args.worker == "draw-http" else "grpc"
        url = s.http_url if protocol == "http" else s.grpc_url
        gen = TritonGenerator(url, protocol, request_batch=args.batch, concurrency=args.clients,
                              shared_memory="on" if args.worker == "draw-shm" else "off")
        try:
            return {**run(gen, gen.batch_size), "transport": gen.transport}
        finally:
            gen.close()


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
    ap.add_argument("--max-batch", type=int, default=0, help="the repository's max_batch_size "
                    "(default: batch x clients, so the server merges every request in flight)")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--transport", action="store_true",
                    help="measure how a render's images arrive (draw-* contenders)")
    ap.add_argument("--json")
    ap.add_argument("--worker", choices=CONTENDERS + TRANSPORTS, help=argparse.SUPPRESS)
    ap.add_argument("--export", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"load average before: {loadavg()}")
    contenders, base = (TRANSPORTS, "draw-onnx") if args.transport else (CONTENDERS, "onnx")
    t0, runs = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        export = make_export(Path(tmp), args.resolution, args.ngf, args.batch, args.clients,
                             args.max_batch)
        for r in range(args.repeats):
            row = {}
            for name in contenders if r % 2 == 0 else contenders[::-1]:
                argv = [sys.executable, __file__, "--worker", name, "--export", str(export)]
                for key in ("batch", "clients", "images", "warmup"):
                    argv += [f"--{key}", str(getattr(args, key))]
                row[name] = run_json(argv, name)
            for name in contenders:
                if name != base:
                    row[f"{name}/onnx"] = row[name]["images_per_s"] / row[base][
                        "images_per_s"]
            runs.append(row)
    print(f"{args.resolution} px, ngf {args.ngf}, batch {args.batch}, {args.clients} clients, "
          f"{args.images} images, {args.repeats} repeats (medians, min-max)")
    for name in contenders:
        ips, p50, p99 = (spread([r[name][k] for r in runs])[0]
                         for k in ("images_per_s", "p50_ms", "p99_ms"))
        mb = (f"  {spread([r[name]['mb_per_s'] for r in runs])[0]:8.1f} MB/s"
              if "mb_per_s" in runs[0][name] else "")
        print(f"  {name:9s} {ips:9.1f} img/s{mb}   latency p50 {p50:8.1f} ms   p99 "
              f"{p99:8.1f} ms")
    for name in contenders:
        if name != base:
            m, lo, hi = spread([r[f"{name}/onnx"] for r in runs])
            print(f"  ratio {name}/{base} median {m:.2f}x ({lo:.2f}-{hi:.2f})")
    print(f"load average after: {loadavg()}  (wall {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
