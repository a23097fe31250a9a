#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md, in one command on one machine:
#
#   benchmarks/gpu.sh OUT [STAGE ...]
#
# Stages (default: all, in this order):
#   check          tests/test_gpu.py and the training and generation tests, on the GPU
#   check-gpu      only tests/test_gpu.py and the compiled-training test (not in the default)
#   train64        training step vs the canonical DCGAN at 64 px, batch 64: gantool's CUDA
#                  defaults (bf16 autocast, channels_last), profiled; then gantool in float32
#   train64-graphs   the same with train.cuda_graphs (each step replayed as one CUDA graph)
#   train64-compile  the same with torch.compile (default mode)
#   train1024      the same at 1024 px, batch 6 (Marchesi's), both capped at 512 channels, on 64
#                  Fashion-MNIST images upscaled to 1024 px PNGs
#   gen1024        gantool bench at 1024 px, batch 1, 8, 32: torch float32 / bf16 / fp16 / fp16
#                  with CUDA graphs
#   gen1024-compile  the torch.compile contenders (float32, fp16) at batch 32
#   stylegan1024   gantool bench of an imported-style StyleGAN2 with FFHQ-1024's shapes (random
#                  weights, written as gantool import writes one), batch 1, 8, 32: torch float32
#                  / fp16 / fp16 with CUDA graphs, at psi 0.7's cost (psi is a network input)
#   render1024     end to end to PNG on the host's cores: benchmarks/render.py with the torch
#                  backend on the GPU (DCGAN ngf 64, batch 32), fpng and Pillow's fallback
#   layouts1024    (not in the default) the output layouts (flat, subdirs, webdataset) at
#                  1024 px with the torch backend on the GPU, each layout's ratio to flat
#
# Output goes to the terminal and OUT/gpu.log; each stage writes its JSON into OUT. A stage that
# fails or runs past its time limit does not stop the next. Set PYTHON to pick the interpreter.
set -u
out=$(mkdir -p "${1:?usage: benchmarks/gpu.sh OUT [STAGE ...]}" && cd "$1" && pwd)
shift
stages=${*:-check train64 train64-graphs train64-compile train1024 gen1024 gen1024-compile stylegan1024 render1024}
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."
log="$out/gpu.log"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, output to terminal and log
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T))" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    echo "== $name: exit ${PIPESTATUS[0]} ($(date +%T))" | tee -a "$log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$log"
"$py" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__,
torch.cuda.get_device_name(0))" | tee -a "$log"

for stage in $stages; do
    case $stage in
    check)
        step check 300 "$py" -m pytest -q -rf --tb=short -p no:cacheprovider tests/test_gpu.py \
            tests/test_train.py tests/test_generate.py
        ;;
    check-gpu)  # only what needs the GPU: tests/test_gpu.py and compiled training
        step check-gpu 200 "$py" -m pytest -q -rf --tb=short -p no:cacheprovider tests/test_gpu.py \
            tests/test_train.py::test_compiled_training_computes_what_eager_training_does
        ;;
    train64)
        step train64 200 "$py" benchmarks/train_step.py --device cuda --repeats 3 --warmup 10 \
            --steps 50 --profile 20 --json "$out/train64.json"
        step train64-fp32 120 "$py" benchmarks/train_step.py --device cuda --repeats 2 \
            --warmup 10 --steps 50 --no-data-rate --set train.amp=off \
            --set train.channels_last=false --json "$out/train64-fp32.json"
        ;;
    train64-graphs)
        step train64-graphs 150 "$py" benchmarks/train_step.py --device cuda --repeats 3 \
            --warmup 10 --steps 50 --profile 20 --no-data-rate --set train.cuda_graphs=true \
            --json "$out/train64-graphs.json"
        ;;
    train64-compile)
        step train64-compile 200 "$py" benchmarks/train_step.py --device cuda --compile \
            --repeats 2 --warmup 10 --steps 50 --profile 20 --no-data-rate \
            --json "$out/train64-compile.json"
        ;;
    train1024)
        "$py" - "$tmp/png1024" <<'EOF'
import sys
from pathlib import Path

from PIL import Image

from gantool.data import load_dataset

folder = Path(sys.argv[1])
folder.mkdir(parents=True)
for i, img in enumerate(load_dataset("builtin:fashion-mnist", 32, 3, progress=False).images[:64]):
    Image.fromarray(img.transpose(1, 2, 0)).resize((1024, 1024), Image.BICUBIC).save(
        folder / f"{i:03d}.png")
EOF
        step train1024 240 "$py" benchmarks/train_step.py --device cuda --resolution 1024 \
            --batch 6 --data "$tmp/png1024" --repeats 3 --warmup 5 --steps 20 --no-data-rate \
            --json "$out/train1024.json"
        ;;
    gen1024)
        step gen1024 240 "$py" -m gantool bench --resolution 1024 --batch-sizes 1,8,32 \
            --backend torch,torch-bf16,torch-fp16,torch-fp16-graphs --json "$out/bench1024.json"
        ;;
    gen1024-compile)
        step gen1024-compile 180 "$py" -m gantool bench --resolution 1024 --batch-sizes 32 \
            --backend torch-compile,torch-fp16-compile --json "$out/bench1024-compile.json"
        ;;
    stylegan1024)
        "$py" -c "import sys; sys.path.insert(0, 'benchmarks'); import harness
harness.stylegan2_checkpoint(sys.argv[1], 1024)" "$tmp"
        step stylegan1024 300 "$py" -m gantool bench "$tmp/stylegan2-1024.pt" --batch-sizes 1,8,32 \
            --backend torch,torch-fp16,torch-fp16-graphs --json "$out/stylegan1024.json"
        ;;
    render1024)
        step render1024 300 "$py" benchmarks/render.py --generator torch --device cuda --ngf 64 \
            --resolution 1024 --batch 32 --images 3200 --repeats 2 --encoders pillow-fast,fpng \
            --json "$out/render1024.json"
        ;;
    layouts1024)
        step layouts1024 300 "$py" benchmarks/render.py --generator torch --device cuda --ngf 64 \
            --resolution 1024 --batch 32 --images 3200 --repeats 3 \
            --layouts flat,subdirs,webdataset --json "$out/layouts1024.json"
        ;;
    *)
        echo "unknown stage $stage: see the head of $0" >&2
        exit 2
        ;;
    esac
done
