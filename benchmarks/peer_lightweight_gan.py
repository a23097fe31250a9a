"""lightweight-gan (lucidrains, MIT, the pip package) trained on the CPU for a wall-clock budget:
the peer of ``benchmarks/peer.py``. Runs in the peer's own virtual environment (its torch and
torchvision), never imports gantool.

    benchmarks/.peer-venv/bin/python benchmarks/peer_lightweight_gan.py --data FOLDER \
        --out DIR --minutes 25 --seed 0 --image-size 64 --batch-size 8 --accumulate 1

The package asserts CUDA when it is imported and moves every tensor with ``.cuda(rank)``. Its
module's source is read, those few lines are rewritten for the CPU (``CPU_PATCHES``, each
checked to match), and it is run as ``lightweight_gan.lightweight_gan``; nothing else of it
changes. The Trainer gets what its command line gives it (that command's defaults,
``cli_model_args``, with ``--set`` in their place), and the loop is its CLI's
(``run_training``): ``Trainer.train()`` until the budget, with its sample grids every 100
steps, then ``Trainer.save``. Seeds torch, numpy and random (its CLI
seeds only multi-GPU runs).

Writes, under ``--out``: the tool's own ``models/default/model_N.pt`` (N = steps // 1000) and
``.config.json``; ``models/default/G.pt``, the same checkpoint with G's weights in GE's place
(its EMA generator averages only past step 20,000 and is a copy of G made at step 2, 1002, ...
before that, so a short run is scored on G as well); and ``peer.json``: steps, images seen,
seconds, files.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import random
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

CPU_PATCHES = [
    ("assert torch.cuda.is_available(), 'You need to have an Nvidia GPU with CUDA installed.'",
     "pass"),
    ("self.cuda(rank)", "pass"),
    (".cuda(self.rank)", ""),
    ("torch.device(f'cuda:{self.rank}')", "torch.device('cpu')"),
]


def import_on_cpu() -> types.ModuleType:
    """``lightweight_gan.lightweight_gan`` with ``CPU_PATCHES`` applied to its source (the
    package's ``__init__``, which imports it unpatched, is not run)."""
    spec = importlib.util.find_spec("lightweight_gan")
    if spec is None:
        sys.exit("lightweight-gan is not installed here: pip install lightweight-gan==1.2.1")
    folder = Path(spec.origin).parent
    package = types.ModuleType("lightweight_gan")
    package.__path__ = [str(folder)]
    sys.modules["lightweight_gan"] = package
    path = folder / "lightweight_gan.py"
    source = path.read_text()
    for old, new in CPU_PATCHES:
        if old not in source:
            sys.exit(f"lightweight-gan's source has changed: {old!r} not found in {path}")
        source = source.replace(old, new)
    module = types.ModuleType("lightweight_gan.lightweight_gan")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the patched tool
    for name in ("LightweightGAN", "Generator", "Discriminator", "Trainer", "NanException"):
        setattr(package, name, getattr(module, name))  # what its __init__ exports
    unused = types.ModuleType("lightweight_gan.diff_augment_test")  # asserts CUDA; its CLI's
    unused.DiffAugmentTest = None  # --aug-test only
    sys.modules[unused.__name__] = unused
    return module


def cli_model_args(**given) -> dict:
    """The Trainer arguments its command line (``lightweight_gan --data ...``) passes, from that
    command's own defaults, with ``given`` in their place (the CLI's names)."""
    import inspect

    from lightweight_gan import cli

    d = {k: v.default for k, v in inspect.signature(cli.train_from_folder).parameters.items()}
    d.update(given)
    return dict(
        name=d["name"], results_dir=d["results_dir"], models_dir=d["models_dir"],
        batch_size=d["batch_size"], gradient_accumulate_every=d["gradient_accumulate_every"],
        attn_res_layers=cli.cast_list(d["attn_res_layers"]), freq_chan_attn=d["freq_chan_attn"],
        disc_output_size=d["disc_output_size"], dual_contrast_loss=d["dual_contrast_loss"],
        antialias=d["antialias"], image_size=d["image_size"],
        num_image_tiles=d["num_image_tiles"] or (4 if d["image_size"] > 512 else 8),
        optimizer=d["optimizer"], num_workers=d["num_workers"], fmap_max=d["fmap_max"],
        transparent=d["transparent"], greyscale=d["greyscale"], lr=d["learning_rate"],
        save_every=d["save_every"], evaluate_every=d["evaluate_every"], aug_prob=d["aug_prob"],
        aug_types=cli.cast_list(d["aug_types"]), dataset_aug_prob=d["dataset_aug_prob"],
        calculate_fid_every=d["calculate_fid_every"],
        calculate_fid_num_images=d["calculate_fid_num_images"],
        clear_fid_cache=d["clear_fid_cache"], amp=d["amp"], load_strict=d["load_strict"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a folder of images")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, required=True, help="wall-clock budget")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=10, help="its default: 10")
    ap.add_argument("--accumulate", type=int, default=4,
                    help="its gradient_accumulate_every (default 4)")
    ap.add_argument("--set", action="append", default=[],
                    help="another of its command line's settings, NAME=VALUE (a Python "
                         "literal: fmap_max=64, attn_res_layers=[]); repeatable")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    lg = import_on_cpu()
    from retry.api import retry_call
    out = Path(args.out)
    model_args = cli_model_args(results_dir=str(out / "results"),
                                models_dir=str(out / "models"), image_size=args.image_size,
                                batch_size=args.batch_size,
                                gradient_accumulate_every=args.accumulate,
                                **{k: ast.literal_eval(v) for k, v in
                                   (item.split("=", 1) for item in args.set)})
    model = lg.Trainer(**model_args, hparams=model_args, use_aim=False, is_ddp=False, rank=0,
                       world_size=1)
    model.clear()
    model.set_data_src(args.data)
    t0 = time.perf_counter()
    deadline = t0 + args.minutes * 60
    while time.perf_counter() < deadline:
        retry_call(model.train, tries=3, exceptions=lg.NanException)  # as its CLI does
        if model.steps % 50 == 0:
            print(f"step {model.steps}, {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    model.save(model.checkpoint_num)
    saved = Path(model.model_name(model.checkpoint_num))
    state = torch.load(saved, weights_only=True)
    state["GAN"].update({"GE." + k[2:]: v for k, v in state["GAN"].items() if k.startswith("G.")})
    torch.save(state, saved.parent / "G.pt")
    (out / "peer.json").write_text(json.dumps({
        "tool": f"lightweight-gan {lg.__version__}", "torch": torch.__version__,
        "steps": model.steps, "images_seen": model.steps * args.batch_size * args.accumulate,
        "seconds": seconds, "aug_prob": model.aug_prob, "checkpoint": str(saved),
        "checkpoint_g": str(saved.parent / "G.pt"), "args": vars(args),
        "g_parameters": sum(p.numel() for p in model.GAN.G.parameters()),
        "d_parameters": sum(p.numel() for p in model.GAN.D.parameters())}, indent=2) + "\n")


if __name__ == "__main__":
    main()
