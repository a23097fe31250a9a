"""Images/s of the inference backends on CPU: ONNX Runtime vs PyTorch eager, same generator.

For each case (resolution, batch) a DCGAN generator (ngf 64, nz 100, 3 channels, random
weights: speed does not depend on them) is saved as a checkpoint and exported with
``gantool export`` code to a uint8-output ONNX model. Each contender then runs in its own fresh
process through the product's own ``Generator.generate(seeds, truncation)``: latents from seeds,
the network, uint8 images (B, H, W, C) out. Contenders alternate over ``--repeats``; the table
gives median images/s and the median of per-repeat ratios onnx / torch.

    python benchmarks/generate.py                       # 64 px batch 16 and 256 px batch 4
    python benchmarks/generate.py --cases 64x16 --repeats 3 --json out.json
    python benchmarks/generate.py --presets marchesi-1024,few-shot-1024 --cases 1024x2

With ``--presets`` each preset's own generator (arch and widths) is measured instead, and the
table adds its multiply-adds per image and each backend's images/s relative to the first
preset's. With ``--stylegan2`` it is a StyleGAN2 generator with the official FFHQ shapes (random
weights, as ``gantool import`` writes an imported one), drawn at psi 0.7:

    python benchmarks/generate.py --stylegan2 --cases 1024x2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from harness import loadavg, random_checkpoint, run_json, spread, stylegan2_checkpoint, time_calls

CONTENDERS = ("torch", "onnx")


def make_models(res: int, folder: Path, ngf: int, preset: str | None,
                stylegan2: bool = False) -> tuple[Path, Path, int]:
    """(checkpoint, ONNX model, multiply-adds per image) of a random generator."""
    from gantool.export.onnx_graph import export_onnx, save_model
    from gantool.model_info import ModelInfo
    from gantool.models.layers import generator_cost

    if stylegan2:
        ckpt, stored = stylegan2_checkpoint(folder, res)
    else:
        ckpt, stored = random_checkpoint(folder / f"ckpt{res}", res, ngf, preset)
    onnx_path = folder / f"model{res}-{preset or ngf}.onnx"
    save_model(export_onnx(stored.net, ModelInfo.from_model(stored.model, stored.config)),
               onnx_path)
    return ckpt, onnx_path, generator_cost(stored.net, stored.model.nz)[1]


def worker(args) -> dict:
    import torch

    from gantool.backends import load_backend

    torch.set_num_threads(args.threads)
    path = args.onnx if args.worker == "onnx" else args.ckpt
    options = {"threads": args.threads} if args.worker == "onnx" else {}
    gen = load_backend(args.worker, path, device="cpu", **options)
    seeds = list(range(args.batch))
    truncation = 0.7 if gen.prior == "stylegan" else None
    times, images = time_calls(lambda: gen.generate(seeds, truncation), args.warmup,
                               args.calls)
    return {"images_per_s": args.batch / spread(times)[0], "shape": list(images.shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="64x16,256x4", help="RESxBATCH, comma-separated")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--presets", default="",
                    help="comma-separated presets whose generators to measure (default: a DCGAN "
                         "of width --ngf)")
    ap.add_argument("--stylegan2", action="store_true",
                    help="a StyleGAN2 generator with FFHQ's shapes instead (random weights)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"load average before: {loadavg()}")
    t0, table = time.perf_counter(), []
    presets = [p for p in args.presets.split(",") if p] or [None]
    with tempfile.TemporaryDirectory() as tmp:
        for preset, case in [(p, c) for c in args.cases.split(",") for p in presets]:
            res, batch = map(int, case.split("x"))
            ckpt, onnx_path, macs = make_models(res, Path(tmp), args.ngf, preset, args.stylegan2)
            runs = []
            for r in range(args.repeats):
                order = CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]
                row = {}
                for name in order:
                    argv = [sys.executable, __file__, "--worker", name, "--ckpt", str(ckpt),
                            "--onnx", str(onnx_path), "--batch", str(batch), "--warmup",
                            str(args.warmup), "--calls", str(args.calls), "--threads",
                            str(args.threads)]
                    row[name] = run_json(argv, name)["images_per_s"]
                row["ratio"] = row["onnx"] / row["torch"]
                runs.append(row)
            result = {"resolution": res, "batch": batch,
                      "preset": "stylegan2-ffhq-shapes" if args.stylegan2 else preset,
                      "multiply_adds": macs, "runs": runs}
            for key in (*CONTENDERS, "ratio"):
                result[key] = spread([row[key] for row in runs])
            table.append(result)
            first = next(r for r in table if r["resolution"] == res and r["batch"] == batch)
            if preset:
                print(f"{preset:<16} {macs / 1e9:6.2f} G multiply-adds/image; vs "
                      f"{first['preset']}: torch x{result['torch'][0] / first['torch'][0]:.2f}, "
                      f"onnx x{result['onnx'][0] / first['onnx'][0]:.2f}")
            print(f"{res:>5} px batch {batch:>3}: torch {result['torch'][0]:8.1f} img/s  "
                  f"onnx {result['onnx'][0]:8.1f} img/s  ratio onnx/torch median "
                  f"{result['ratio'][0]:.2f}x (min {result['ratio'][1]:.2f}, max "
                  f"{result['ratio'][2]:.2f}) over {args.repeats} repeats", flush=True)
    print(f"load average after: {loadavg()}  (wall {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
