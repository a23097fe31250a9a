"""ONNX -> TensorRT plan with a dynamic batch profile (TensorRT 10 and 11).

FP16 by capability, not by version string: where ``BuilderFlag.FP16`` exists (TensorRT 10) the
float32 model is built with that flag; where it does not (TensorRT 11 made every network strongly
typed), the FP16 ONNX model is parsed into a strongly typed network, so its fp16 layers stay fp16.
Either way the built engine's layers are inspected and the build fails if none runs in fp16.

The plan is written bare (no header), as Triton and trtexec load it, with a JSON sidecar
(``model.plan.json``) holding the model metadata, the profile and the TensorRT version. A plan is
tied to its GPU model and TensorRT version: build it where it will run (the repository's
``deploy/build_engine.sh`` is a trtexec recipe in NVIDIA's container).
"""

from __future__ import annotations

import json
from pathlib import Path

from gantool.artifacts import PLAN, plan_sidecar
from gantool.backends.trt_backend import EngineRunner, require_tensorrt
from gantool.errors import GantoolError, OptionError
from gantool.export.job import ExportJob, ExportOptions, verified
from gantool.export.verify import compare
from gantool.fileio import atomic_write


def check_engine(options: ExportOptions) -> None:
    """The engine format's check before any slow work: TensorRT and a GPU are here."""
    try:
        require_tensorrt()
    except GantoolError as e:
        raise OptionError("formats", f"engine: {e}") from None


def build_engine(job: ExportJob) -> list[Path]:
    """The engine format's builder: ``model.plan`` and ``model.plan.json``, from the (FP16)
    ONNX model, verified."""
    o = job.options
    plan = build_plan(job.onnx_fp16 if o.fp16 else job.onnx, job.out / PLAN, fp16=o.fp16,
                      batch=o.batch, workspace_gb=o.workspace_gb, metadata=job.result.metadata)
    if o.verify:
        job.result.checks.append(verified(compare(
            PLAN, "fp16" if o.fp16 else "fp32", job.reference,
            EngineRunner(plan).run(job.z, job.c, job.psi)), job.log))
    return [plan, plan_sidecar(plan)]


def build_plan(model, plan_path: Path, fp16: bool, batch: tuple[int, int, int],
               workspace_gb: float = 4.0, metadata: dict | None = None,
               timing_cache: Path | None = None) -> Path:
    """Build and write ``plan_path`` (+ ``.plan.json``) from an onnx.ModelProto whose inputs
    are (batch, width) matrices: z, and a conditional model's one-hot class, and a truncating
    network's psi (``gantool.model_info.graph_inputs``)."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    weak_fp16 = hasattr(trt.BuilderFlag, "FP16")
    flags = 0
    if fp16 and not weak_fp16:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GantoolError(f"TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions, below
    if fp16 and weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    lo, opt, hi = batch
    profile = builder.create_optimization_profile()
    widths = {i.name: i.type.tensor_type.shape.dim[1].dim_value for i in model.graph.input}
    for name, width in widths.items():
        profile.set_shape(name, (lo, width), (opt, width), (hi, width))
    config.add_optimization_profile(profile)
    cache_path = timing_cache or plan_path.with_suffix(".timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise GantoolError("TensorRT could not build the engine (see its log above)")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    precisions = _layer_precisions(trt, engine)
    if fp16 and "Half" not in precisions:
        raise OptionError("fp16", f"was asked for but no engine layer runs in fp16 "
                           f"(precisions: {', '.join(sorted(precisions)) or 'unknown'})")
    with atomic_write(plan_path) as f:
        f.write(bytes(serialized))  # bare plan, no header
    with atomic_write(cache_path) as f:
        f.write(bytes(cache.serialize()))
    sidecar = {"tensorrt_version": trt.__version__, "fp16": fp16,
               "fp16_mode": ("builder-flag" if weak_fp16 else "strongly-typed") if fp16 else None,
               "profile": {name: {"min": [lo, w], "opt": [opt, w], "max": [hi, w]}
                           for name, w in widths.items()},
               "layer_precisions": sorted(precisions), "metadata": metadata or {}}
    with atomic_write(plan_sidecar(plan_path)) as f:
        f.write((json.dumps(sidecar, indent=2) + "\n").encode())
    return plan_path


def _layer_precisions(trt, engine) -> set[str]:
    """Output precisions of the engine's layers, from the engine inspector's JSON."""
    info = json.loads(engine.create_engine_inspector().get_engine_information(
        trt.LayerInformationFormat.JSON))
    found = set()
    for layer in info.get("Layers", []):
        if isinstance(layer, dict):
            for out in layer.get("Outputs", []):
                fmt = str(out.get("Format/Datatype", ""))
                found.update(p for p in ("Half", "Float", "Int8", "UInt8") if p in fmt)
    return found
