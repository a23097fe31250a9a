"""Does a conditional model draw the class it is asked for? Fashion-MNIST, scored by the
project's garment classifier (``tests/garments.py``, the yardstick of ``tests/test_quality.py``).

    python benchmarks/conditional.py --data ../shared/data/fashion-mnist --epochs 3 \
        --out runs/conditional --json benchmarks/results-conditional-fashion-mnist.json

Two contenders, each ``gantool train --preset fashion-mnist`` in its own process, one after the
other, for the same steps (``--epochs`` of the training images at the preset's batch):
``conditional`` (``--conditional``: class-conditional BatchNorm in G, projection D) and
``unconditional``. Each checkpoint is drawn through the product's torch backend on seeds
0..N-1 (N = ``--per-class`` x 10; the conditional model with class = seed mod 10, i.e.
``--per-class`` images of every class). Reported: the classifier's accuracy of the asked-for
class, per class and averaged over the ten (conditional only), and the Frechet distance of the
classifier's features to the real test images (both), with the classifier's own accuracy on the
real test images beside them. Writes ``--json`` and a grid per model (one row per class for the
conditional one) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from gantool.backends import load_backend  # noqa: E402
from gantool.data.dataset import load_dataset  # noqa: E402

from garments import GarmentJudge  # noqa: E402

BATCH = 128  # the fashion-mnist preset's


def train(args: argparse.Namespace, name: str, steps: int) -> tuple[Path, float]:
    """One contender in its own process -> (its last checkpoint, training seconds). A finished
    run of the same steps already in ``--out`` is reused. The seconds are the run's own: from
    its metrics rows' times, scaled from the first logged step to all of them."""
    out = args.out / name
    done = [r for r in sorted(out.glob("*")) if (r / "checkpoints" / f"step-{steps:07d}.pt")
            .is_file()] if out.is_dir() else []
    if not done:
        _train(args, name, steps, out)
        done = sorted(out.iterdir())[-1:]
    rows = [json.loads(x) for x in (done[-1] / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss_d" in r]
    seconds = (rows[-1]["time"] - rows[0]["time"]) * rows[-1]["step"] / (
        rows[-1]["step"] - rows[0]["step"])
    return done[-1] / "checkpoints" / "last.pt", seconds


def _train(args: argparse.Namespace, name: str, steps: int, out: Path) -> None:
    cmd = [sys.executable, "-m", "gantool", "train", "--preset", "fashion-mnist", "--data",
           str(args.data), "--steps", str(steps), "--name", name, "--out", str(out),
           "--sample-every", str(steps), "--checkpoint-every", str(steps), "--no-progress",
           *(["--conditional"] if name == "conditional" else [])]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/fashion-mnist")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--per-class", type=int, default=100, help="images drawn per class")
    p.add_argument("--out", type=Path, default=Path("runs/conditional"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    n_train = len(load_dataset(args.data, 28, 1).images)
    steps = int(args.epochs * n_train // BATCH)
    judge = GarmentJudge(args.data)
    seeds = list(range(10 * args.per_class))
    asked = np.asarray(seeds) % 10
    result: dict = {"data": str(args.data), "epochs": args.epochs, "steps": steps,
                    "batch": BATCH, "images_per_class": args.per_class,
                    "classifier_accuracy_on_real_test_images": round(float(judge.accuracy), 4),
                    "contenders": {}}
    for name in ("conditional", "unconditional"):
        ckpt, seconds = train(args, name, steps)
        gen = load_backend("torch", str(ckpt), device="cpu")
        images = np.concatenate([gen.generate(seeds[i:i + 500], None)
                                 for i in range(0, len(seeds), 500)])
        score = judge.score(images)
        row = {"train_seconds": round(seconds, 1), "frechet": round(score["frechet"], 2),
               "classes_seen": score["classes"], "checkpoint": str(ckpt.relative_to(args.out))}
        if gen.classes:
            hit = judge.predict(images) == asked
            per_class = {gen.classes[c]: round(float(hit[asked == c].mean()), 4)
                         for c in range(10)}
            row.update(per_class_accuracy=per_class,
                       mean_accuracy=round(float(np.mean(list(per_class.values()))), 4))
            grid = args.out / "conditional-classes.png"
            subprocess.run([sys.executable, "-m", "gantool", "generate", str(ckpt), "--class",
                            "all", "--seeds", "0-15", "--grid", str(grid), "--no-progress"],
                           check=True, stdout=subprocess.DEVNULL)
        result["contenders"][name] = row
        print(name, json.dumps(row), flush=True)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    cond = result["contenders"]["conditional"]
    print(f"\n{steps} steps ({args.epochs:g} epochs), {args.per_class} images per class")
    print(f"{'class':<12} accuracy of the asked-for class")
    for c, acc in cond["per_class_accuracy"].items():
        print(f"{c:<12} {acc:.1%}")
    print(f"{'mean':<12} {cond['mean_accuracy']:.1%} (the classifier on real test images: "
          f"{judge.accuracy:.1%})")
    print(f"Frechet distance (garment features): conditional {cond['frechet']}, unconditional "
          f"{result['contenders']['unconditional']['frechet']}")


if __name__ == "__main__":
    main()
