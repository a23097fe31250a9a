#!/usr/bin/env bash
# Build a TensorRT plan from a `gantool export` folder on the machine that will serve it.
#
# A plan only runs on the GPU model and TensorRT version it was built with, so build it on the
# deployment machine, inside NVIDIA's TensorRT container of the same release (YY.MM) as the
# Triton container that will load it (tritonserver:YY.MM-py3 ships that TensorRT).
#
#   deploy/build_engine.sh EXPORT_DIR [RELEASE] [MIN,OPT,MAX] [WORKSPACE_MIB]
#   deploy/build_engine.sh export/fmnist 25.01 1,8,64 4096
#
# Uses model_fp16.onnx when the folder has one (a strongly typed fp16 build, which TensorRT 10
# and 11 both accept), else model.onnx (fp32). Writes EXPORT_DIR/model.plan (bare, as Triton
# and trtexec load it), model.plan.json (the model's metadata) and timing.cache (reused by the
# next build). DRY_RUN=1 prints the docker command instead of running it.
# The export folder's file names (model.onnx, model_fp16.onnx, model.plan, model.plan.json,
# export.json) are gantool/artifacts.py's; tests/test_export.py runs this script on a folder
# gantool export wrote.
set -euo pipefail

dir=$(cd "${1:?usage: build_engine.sh EXPORT_DIR [RELEASE] [MIN,OPT,MAX] [WORKSPACE_MIB]}" && pwd)
release=${2:-25.01}
batch=${3:-1,8,64}
workspace=${4:-4096}
IFS=, read -r lo opt hi <<< "$batch"
[[ -f "$dir/export.json" ]] || { echo "error: $dir/export.json missing: run gantool export" >&2; exit 2; }
# every graph input is (batch, width): z, a conditional model's class, an imported StyleGAN's
# truncation; export.json lists them (an older one: z alone)
inputs=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["model"]
print(json.dumps(m.get("inputs") or {"z": m["nz"]}))' "$dir/export.json")
shapes() {  # shapes BATCH -> name:BATCHxWIDTH,...
    python3 -c 'import json,sys; print(",".join(f"{k}:{sys.argv[2]}x{w}" for k, w in json.loads(sys.argv[1]).items()))' "$inputs" "$1"
}

if [[ -f "$dir/model_fp16.onnx" ]]; then
    onnx=model_fp16.onnx; precision=(--stronglyTyped)
else
    onnx=model.onnx; precision=()
fi
cmd=(docker run --rm --gpus all -v "$dir:/w" "nvcr.io/nvidia/tensorrt:${release}-py3"
     trtexec "--onnx=/w/$onnx" "${precision[@]}"
     "--minShapes=$(shapes "$lo")" "--optShapes=$(shapes "$opt")" "--maxShapes=$(shapes "$hi")"
     "--memPoolSize=workspace:${workspace}M" --timingCacheFile=/w/timing.cache
     --saveEngine=/w/model.plan)
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
fi
"${cmd[@]}"
python3 - "$dir" "$onnx" "$lo" "$opt" "$hi" "$inputs" "$release" <<'PY'
import json, sys
d, onnx, lo, opt, hi, inputs, release = sys.argv[1:]
summary = json.load(open(f"{d}/export.json"))
sidecar = {"built_by": "deploy/build_engine.sh", "container": f"tensorrt:{release}-py3",
           "fp16": onnx == "model_fp16.onnx", "source": onnx,
           "profile": {name: {"min": [int(lo), w], "opt": [int(opt), w], "max": [int(hi), w]}
                       for name, w in json.loads(inputs).items()},
           "metadata": summary["metadata"]}
json.dump(sidecar, open(f"{d}/model.plan.json", "w"), indent=2)
PY
echo "wrote $dir/model.plan"
