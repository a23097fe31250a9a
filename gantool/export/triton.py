"""The triton format: a Triton Inference Server model repository for a `gantool export` folder.

The same three models, tensor names and shapes in every variant:

- ``latent``: python backend on the CPU: ``seed`` (INT64 [1]) and ``truncation`` (FP32 [1]) per
  image -> ``z`` (FP32 [nz]), computed by a copy of ``gantool/latent.py``, the very
  file the CLI uses, so a seed names the same image here as everywhere else.
- ``generator``: ``z`` -> ``image`` (UINT8 [H, W, C]). Variant ``gpu``: the TensorRT plan
  (``tensorrt_plan``) when the export built one, else the ONNX model (``onnxruntime_onnx``,
  optionally with ONNX Runtime's TensorRT FP16 accelerator). Variant ``cpu``: a python-backend
  model running the ONNX model with ONNX Runtime, for servers without the GPU backends.
- ``render``: an ensemble ``seed, truncation -> image``.

A conditional model's repository adds ``class`` (INT32 [1], the class index) to ``latent`` and
``render``; ``latent`` also answers ``onehot`` (FP32 [K]), which the ensemble feeds to the
generator's ``class`` input. For a prior whose network applies the truncation (an imported
StyleGAN's psi), ``latent`` answers ``psi`` (FP32 [1]) beside z, which the ensemble feeds to the
generator's ``truncation`` input.

Every config is built as a dict, parsed into Triton's ``ModelConfig`` protobuf (field names and
enum values checked; ``tritonclient`` ships the message) and written as text protobuf. The
repository is assembled in a temporary folder and renamed into place: never half written.

The python models Triton runs (``gantool/serve/triton/``) run in Triton's own Python, without
gantool: the names they read (``ONNX_FILE_PARAMETER``, ``LATENT_COPY``) are spelt there too, and
tests/test_export.py checks that both agree. Light to import (no torch, no Triton package): the
formats table imports ``build_triton`` and ``check_triton``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from gantool import latent as latent_module
from gantool.artifacts import ONNX, PLAN, RECORD, REPOSITORY, export_record, onnx_name
from gantool.errors import GantoolError, OptionError
from gantool.export.job import ExportJob, ExportOptions
from gantool.fileio import UMASK
from gantool.latent import NETWORK_TRUNCATION
from gantool.model_info import ModelInfo

VARIANTS = ("cpu", "gpu")
ACCELERATORS = ("none", "tensorrt")
TEMPLATES = Path(__file__).parents[1] / "serve" / "triton"  # the python models' model.py
LATENT_COPY = "latent.py"  # gantool/latent.py, beside the latent model's model.py
ONNX_FILE_PARAMETER = "onnx_file"  # the cpu generator's parameter: its ONNX file's name
QUEUE_DELAY_US = 2000  # how long Triton may hold a request to fill a preferred batch
TRITON_RELEASE = "25.01"  # the NVIDIA container release deploy/build_engine.sh defaults to


def model_config_message():
    """Triton's ``ModelConfig`` protobuf class (from tritonclient, the serve extra)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise GantoolError("Triton repositories need the serve extra: pip install "
                           "'gantool[serve]'") from None
    return model_config_pb2.ModelConfig


def to_pbtxt(config: dict) -> str:
    """A config dict -> Triton's text format, after parsing it into ``ModelConfig``."""
    from google.protobuf import json_format, text_format

    message = model_config_message()()
    try:
        json_format.ParseDict(config, message)
    except json_format.ParseError as e:
        raise GantoolError(f"internal: invalid Triton config for {config.get('name')}: {e}") \
            from None
    return text_format.MessageToString(message)


def parse_pbtxt(text: str):
    """``config.pbtxt`` text -> ``ModelConfig`` (raises on any unknown field or value)."""
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_message()())


def latent_config(nz: int, prior: str, truncation: float | None, max_batch: int,
                  delay_us: int, classes: tuple[str, ...] = (), weights: str = "") -> dict:
    k = len(classes)
    return {
        "name": "latent", "backend": "python", "max_batch_size": max_batch,
        "input": [_tensor("seed", "TYPE_INT64", [1]), _tensor("truncation", "TYPE_FP32", [1]),
                  *([_tensor("class", "TYPE_INT32", [1])] if k else [])],
        "output": [_tensor("z", "TYPE_FP32", [nz]),
                   *([_tensor("onehot", "TYPE_FP32", [k])] if k else []),
                   *([_tensor("psi", "TYPE_FP32", [1])] if prior in NETWORK_TRUNCATION else [])],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "dynamic_batching": {"max_queue_delay_microseconds": delay_us},
        "parameters": _params(nz=nz, prior=prior, classes=json.dumps(list(classes)),
                              default_truncation="none" if truncation is None else truncation,
                              **({"weights_sha256": weights} if weights else {})),
    }


def generator_config(kind: str, nz: int, image: list[int], batch: tuple[int, int, int],
                     instances: int = 1, delay_us: int = QUEUE_DELAY_US,
                     filename: str | None = None, accelerator: str = "none",
                     threads: int = 0, classes: int = 0, psi: bool = False) -> dict:
    """``kind``: ``python`` (ONNX Runtime on the CPU), ``onnx`` or ``plan`` (GPU backends);
    ``classes``: a conditional model's class count (its ``class`` input); ``psi``: whether the
    network takes its truncation (its ``truncation`` input)."""
    lo, opt, hi = batch
    filename = filename or (PLAN if kind == "plan" else ONNX)
    inputs = {"z": nz, **({"class": classes} if classes else {}), **({"truncation": 1} if psi
                                                                      else {})}
    config = {
        "name": "generator", "max_batch_size": hi,
        "input": [_tensor(name, "TYPE_FP32", [n]) for name, n in inputs.items()],
        "output": [_tensor("image", "TYPE_UINT8", image)],
        "instance_group": [{"kind": "KIND_CPU" if kind == "python" else "KIND_GPU",
                            "count": instances}],
        "dynamic_batching": {"preferred_batch_size": sorted({opt, hi}),
                             "max_queue_delay_microseconds": delay_us},
        "model_warmup": [{"name": "zeros", "batch_size": lo if kind == "python" else opt,
                          "inputs": {name: {"data_type": "TYPE_FP32", "dims": [n],
                                            "zero_data": True} for name, n in inputs.items()}}],
    }
    if kind == "python":
        config["backend"] = "python"
        config["parameters"] = _params(**{ONNX_FILE_PARAMETER: filename},
                                       intra_op_threads=threads)
    elif kind == "plan":
        config.update(platform="tensorrt_plan", default_model_filename=filename)
    elif kind == "onnx":
        config.update(platform="onnxruntime_onnx", default_model_filename=filename)
        if accelerator == "tensorrt":
            config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
                {"name": "tensorrt", "parameters": {"precision_mode": "FP16",
                                                    "max_workspace_size_bytes": str(1 << 32)}}]}}
    else:
        raise ValueError(f"unknown generator kind {kind!r}")
    return config


def render_config(image: list[int], max_batch: int, classes: int = 0, psi: bool = False) -> dict:
    cls = {"class": "class"} if classes else {}
    return {
        "name": "render", "platform": "ensemble", "max_batch_size": max_batch,
        "input": [_tensor("seed", "TYPE_INT64", [1]), _tensor("truncation", "TYPE_FP32", [1]),
                  *([_tensor("class", "TYPE_INT32", [1])] if classes else [])],
        "output": [_tensor("image", "TYPE_UINT8", image)],
        "ensemble_scheduling": {"step": [
            {"model_name": "latent", "model_version": -1,
             "input_map": {"seed": "seed", "truncation": "truncation", **cls},
             "output_map": {"z": "z", **({"onehot": "onehot"} if classes else {}),
                            **({"psi": "psi"} if psi else {})}},
            {"model_name": "generator", "model_version": -1,
             "input_map": {"z": "z", **({"class": "onehot"} if classes else {}),
                           **({"truncation": "psi"} if psi else {})},
             "output_map": {"image": "image"}},
        ]},
    }


def check_options(variant: str, instances: int, accelerator: str, output: str | None) -> None:
    """One-line errors for impossible repository options (before any slow work)."""
    if variant not in VARIANTS:
        raise GantoolError(f"unknown Triton variant {variant!r}; choose {' or '.join(VARIANTS)}")
    if accelerator not in ACCELERATORS:
        raise GantoolError(f"unknown accelerator {accelerator!r}; choose "
                           f"{' or '.join(ACCELERATORS)}")
    if accelerator != "none" and variant != "gpu":
        raise OptionError("triton_accelerator", "applies to the gpu variant's ONNX model")
    if instances < 1:
        raise OptionError("triton_instances", f"must be at least 1, got {instances}")
    if output != "uint8":
        raise OptionError("output", "a Triton repository serves uint8 images: export uint8")
    model_config_message()  # the serve extra is installed


def check_triton(options: ExportOptions) -> None:
    """The triton format's check before any slow work: its options, and the serve extra."""
    check_options(options.triton_variant, options.triton_instances, options.triton_accelerator,
                  options.output)


def build_triton(job: ExportJob) -> list[Path]:
    """The triton format's builder: ``model_repository/`` for the models already in the folder
    (its export.json)."""
    o = job.options
    return [write_repository(job.out, o.triton_variant, o.batch, o.triton_instances,
                             o.triton_accelerator, o.fp16)]


def write_repository(export_dir: Path, variant: str = "cpu",
                     batch: tuple[int, int, int] = (1, 8, 64), instances: int = 1,
                     accelerator: str = "none", fp16: bool = False,
                     delay_us: int = QUEUE_DELAY_US) -> Path:
    """``export_dir/model_repository`` for the models ``gantool export`` wrote into
    ``export_dir`` (its ``export.json`` says what they are). Returns the repository path."""
    summary = export_record(export_dir, need=("metadata",), hint="run gantool export again")
    info = ModelInfo.from_metadata(summary["metadata"], str(export_dir / RECORD))
    check_options(variant, instances, accelerator, info.output)
    nz, truncation = info.nz, info.truncation
    image, hi = [info.resolution, info.resolution, info.channels], batch[2]
    if variant == "cpu":
        source, kind = export_dir / ONNX, "python"
    elif (export_dir / PLAN).is_file() and accelerator == "none":
        source, kind = export_dir / PLAN, "plan"
    else:
        source, kind = export_dir / onnx_name(fp16), "onnx"
    if not source.is_file():
        raise GantoolError(f"{source} is missing; run gantool export again")
    psi = info.prior in NETWORK_TRUNCATION
    configs = {
        "latent": latent_config(nz, info.prior, truncation, hi, delay_us, info.classes,
                                info.weights_sha256),
        "generator": generator_config(kind, nz, image, batch, instances, delay_us,
                                      source.name, accelerator, classes=len(info.classes),
                                      psi=psi),
        "render": render_config(image, hi, len(info.classes), psi),
    }
    target = export_dir / REPOSITORY
    tmp = Path(tempfile.mkdtemp(prefix=f".{REPOSITORY}.", dir=export_dir))
    tmp.chmod(0o777 & ~UMASK)  # mkdtemp makes 0700: a server running as another user could not
    try:
        for name, config in configs.items():
            (tmp / name / "1").mkdir(parents=True)
            (tmp / name / "config.pbtxt").write_text(to_pbtxt(config))
        shutil.copyfile(latent_module.__file__, tmp / "latent" / "1" / LATENT_COPY)
        shutil.copyfile(TEMPLATES / "latent_model.py", tmp / "latent" / "1" / "model.py")
        shutil.copyfile(source, tmp / "generator" / "1" / source.name)
        if kind == "python":
            shutil.copyfile(TEMPLATES / "generator_model.py", tmp / "generator" / "1" / "model.py")
        (tmp / "README.md").write_text(_readme(variant, kind, nz, image, hi, info.prior,
                                               truncation))
        (tmp / "gantool.json").write_text(json.dumps(
            {"variant": variant, "generator": kind, "batch": list(batch), "nz": nz,
             "image": image, "prior": info.prior, "truncation": truncation,
             "metadata": summary["metadata"]}, indent=2) + "\n")
        old = None
        if target.exists():
            stale = export_dir / f".{REPOSITORY}.old"
            shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted earlier export
            old = target.rename(stale)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _tensor(name: str, dtype: str, dims: list[int]) -> dict:
    return {"name": name, "data_type": dtype, "dims": dims}


def _params(**values) -> dict:
    return {k: {"string_value": str(v)} for k, v in values.items()}


def _readme(variant, kind, nz, image, max_batch, prior, truncation) -> str:
    h, w, c = image
    backend = {"python": "ONNX Runtime on the CPU (python backend)",
               "plan": f"the TensorRT plan {PLAN} (GPU)",
               "onnx": "ONNX Runtime on the GPU (onnxruntime backend)"}[kind]
    plain = "1" if prior == "uniform" else "3.4e38 (no value of z is ever redrawn)"
    meaning = "largest abs(z) allowed, > 0 (uniform prior: <= 1)"
    if prior in NETWORK_TRUNCATION:
        plain, meaning = "1", "psi: w moves toward the average w by this factor (1: none)"
    default = "none (the plain prior)" if truncation is None else f"{truncation:g}"
    top = "2^32 - 1" if prior in NETWORK_TRUNCATION else "2^63 - 1"
    return f"""# gantool Triton model repository ({variant} variant)

Written by `gantool export --formats triton`. Models:

- `render`: ensemble, the one to call: `seed`, `truncation` -> `image`.
- `latent`: seed -> z ({prior} prior, nz = {nz}), by `latent/1/latent.py`, the same file the
  gantool CLI uses: a seed and a truncation name the same image everywhere.
- `generator`: z -> image, by {backend}.

## Start it

    gantool serve {REPOSITORY} --http-port 8000 --grpc-port 8001

or, in NVIDIA's Triton container (the gpu variant; the `deploy/` folder of gantool has a
compose file and Kubernetes manifests):

    docker run --gpus all --shm-size 1g -p 8000:8000 -p 8001:8001 \\
      -v $PWD/{REPOSITORY}:/models nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3 \\
      tritonserver --model-repository /models

## Request

Model `render`, a batch of B images (1 <= B <= {max_batch}):

| tensor | dtype | shape | meaning |
|---|---|---|---|
| `seed` (in) | INT64 | [B, 1] | image seed, 0 <= seed <= {top} |
| `truncation` (in) | FP32 | [B, 1] | {meaning} |
| `image` (out) | UINT8 | [B, {h}, {w}, {c}] | the images, rows, columns, channels |

The model's default truncation is {default}; the plain prior is truncation {plain}.
A request with a negative seed or a truncation out of range gets an error naming it; the
server keeps serving every other request.

    gantool render --url localhost:8001 --seeds 0-999 --truncation 0.5 --out renders/
"""
