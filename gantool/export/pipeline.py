"""`gantool export`: checkpoint -> verified artifacts in one folder, by one dispatcher.

``export_checkpoint`` runs the builder of each format row (``gantool.export.FORMATS``) in
order. Each artifact is built in memory, verified against the PyTorch generator on fixed
seeds, and only then written (atomically), into a staging folder that replaces the output
folder once every format is done: a failed verification leaves no file behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gantool.artifacts import RECORD, changed_files, digest
from gantool.config import ModelConfig
from gantool.errors import GantoolError, OptionError
from gantool.export import (
    FORMATS,
    ExportFormat,
    ExportOptions,
    build_order,
    check_format_options,
)
from gantool.export.folder import staged
from gantool.export.fp16 import FP16_MAX, convert_fp16, fp16_overflows
from gantool.export.onnx import export_onnx, save_model
from gantool.export.verify import Check, compare
from gantool.fileio import atomic_write
from gantool.model_info import ModelInfo, graph_inputs, read_plan_sidecar
from gantool.models import run_generator
from gantool.models.checkpoint import load_generator, weights_sha256
from gantool.sampling.latent import class_vectors, latents, truncation_input

VERIFY_SEEDS = tuple(range(8))


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    fidelity: dict | None = None  # KID/FID between PyTorch's and the FP16 model's images


@dataclass
class ExportJob:
    """What each builder gets: the folder to write into, the options, the generator with its
    images on the verification seeds, the result so far, and the ONNX models once built."""

    out: Path
    options: ExportOptions
    generator: torch.nn.Module
    model: ModelConfig
    info: ModelInfo  # what the exported files say about the model
    z: np.ndarray
    c: np.ndarray | None
    psi: np.ndarray | None  # the truncation input of a network that applies it
    reference: np.ndarray  # the generator's float (B, C, H, W) output for z (and c, psi)
    log: Callable[[str], None]
    result: ExportResult = field(default_factory=ExportResult)
    onnx: Any = None  # the float32 ONNX model
    onnx_fp16: Any = None


def export_checkpoint(checkpoint: Path, out: Path, formats: list[ExportFormat], log=print,
                      **options) -> ExportResult:
    """Export ``checkpoint`` into ``out`` as ``formats`` (and the formats they are built from),
    ``options`` being ``ExportOptions`` fields: every option and machine checked first, then
    each format's builder in order, in a staging folder swapped into ``out`` once all of them
    are written and verified (``export.json`` describes them)."""
    opts = ExportOptions(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in options.items()})
    check_format_options(formats, opts)
    _check(opts)
    order = build_order(formats)
    for f in order:
        if f.check:
            STEPS[f.check](opts)  # before any slow work: a clear error on the wrong machine
    with staged(out) as stage:
        job = _start(checkpoint, stage, opts, log)
        for f in order:
            job.result.files += STEPS[f.builder](job)
            if f.name == "onnx" and FORMATS["engine"] not in order:
                job.result.files += _keep_plan(out, job)
            write_summary(stage, job.result)
    job.result.files = [out / p.name for p in job.result.files]
    return job.result


def _start(checkpoint: Path, out: Path, options: ExportOptions, log) -> ExportJob:
    generator, m, config, step = load_generator(checkpoint, ema=options.ema)
    z = latents(VERIFY_SEEDS, m.nz, m.prior, m.truncation)  # (8, nz) float32
    c = class_vectors(VERIFY_SEEDS, None, len(m.classes)) if m.classes else None
    psi = truncation_input(m.truncation, m.prior, len(VERIFY_SEEDS))
    with torch.no_grad():
        reference = run_generator(generator, *_tensors(z, c, psi)).numpy()  # (8, C, H, W)
    info = ModelInfo.from_model(m, config, options.output, step, weights_sha256(generator))
    return ExportJob(out, options, generator, m, info, z, c, psi, reference, log)


def build_onnx(job: ExportJob) -> list[Path]:
    """``model.onnx`` (+ ``model_fp16.onnx`` with fp16, and its fidelity when asked)."""
    o, m, inputs = job.options, job.model, (job.z, job.c, job.psi)
    model = export_onnx(job.generator, job.info)
    job.result.metadata = _sidecar(model)
    if o.verify:
        job.result.checks.append(_verified(compare("model.onnx", "fp32", job.reference,
                                                   _run(model, *inputs)), job.log))
    save_model(model, job.out / "model.onnx")
    job.onnx, files = model, [job.out / "model.onnx"]
    if not o.fp16:
        return files
    fp16_model = job.onnx_fp16 = convert_fp16(model, list(o.keep_fp32))
    if o.verify:
        job.result.checks.append(_verified(_fp16_check(job, fp16_model), job.log))
    save_model(fp16_model, job.out / "model_fp16.onnx")
    if o.fidelity:
        from gantool.metrics.fid import kid_text

        done = job.result.fidelity = fp16_fidelity(job.generator, fp16_model, m, o.fidelity)
        job.log(f"model_fp16.onnx fidelity on {o.fidelity} seeds: KID(torch fp32, fp16) "
                f"{kid_text(done['kid'], done['kid_std'], done['num'], '.2e', '.1e')}, "
                f"FID {done['fid']:.3f}")
    return files + [job.out / "model_fp16.onnx"]


def _fp16_check(job: ExportJob, fp16_model) -> Check:
    """The FP16 model against PyTorch, naming the nodes that leave fp16's range."""
    inputs = (job.z, job.c, job.psi)
    check = compare("model_fp16.onnx", "fp16", job.reference, _run(fp16_model, *inputs))
    over = fp16_overflows(job.onnx, graph_inputs(*inputs))
    over = [o for o in over if o[0] not in job.options.keep_fp32]
    if over:
        node, op, peak = over[0]
        more = f" (and {len(over) - 1} later nodes)" if len(over) > 1 else ""
        problems = check.problems + (
            f"node {node} ({op}) reaches {peak:.3g}, past fp16's {FP16_MAX:g}{more}; "
            f"re-export with --keep-fp32 {','.join(o[0] for o in over)}",)
        check = Check(**{**check.__dict__, "problems": problems})
    return check


def check_engine(options: ExportOptions) -> None:
    from gantool.backends.trt_backend import require_tensorrt

    try:
        require_tensorrt()
    except GantoolError as e:
        raise OptionError("formats", f"engine: {e}") from None


def build_engine(job: ExportJob) -> list[Path]:
    """``model.plan`` and ``model.plan.json``, from the (FP16) ONNX model."""
    from gantool.backends.trt_backend import EngineRunner
    from gantool.export.tensorrt import build_engine as build_plan

    o = job.options
    plan = build_plan(job.onnx_fp16 if o.fp16 else job.onnx, job.out / "model.plan",
                      fp16=o.fp16, batch=o.batch, workspace_gb=o.workspace_gb,
                      metadata=job.result.metadata)
    if o.verify:
        job.result.checks.append(_verified(compare(
            "model.plan", "fp16" if o.fp16 else "fp32", job.reference,
            EngineRunner(plan).run(job.z, job.c, job.psi)), job.log))
    return [plan, plan.with_suffix(".plan.json")]


def _keep_plan(old: Path, job: ExportJob) -> list[Path]:
    """The TensorRT plan already in the output folder (``deploy/build_engine.sh`` builds one on
    the serving machine), carried into this export when it was built from this same model
    (metadata equal) for this batch profile; anything else is replaced as a whole."""
    plan, sidecar = old / "model.plan", old / "model.plan.json"
    if not (plan.is_file() and sidecar.is_file()) or changed_files(old, [plan.name]):
        return []
    try:
        about = read_plan_sidecar(sidecar)[1]
    except GantoolError:  # a damaged sidecar: the plan is not kept
        return []
    top = (about.get("profile", {}).get("z", {}).get("max") or [None])[0]
    if about.get("metadata") != job.result.metadata or top != job.options.batch[2]:
        return []
    for path in (plan, sidecar):
        shutil.copy2(path, job.out / path.name)
    job.log(f"kept {plan.name}: built from this same model, batches up to {top}")
    return [job.out / plan.name, job.out / sidecar.name]


def check_triton(options: ExportOptions) -> None:
    from gantool.serve.repository import check_options

    check_options(options.triton_variant, options.triton_instances, options.triton_accelerator,
                  options.output)


def build_triton(job: ExportJob) -> list[Path]:
    """``model_repository/`` for the models already in the folder (its export.json)."""
    from gantool.serve.repository import write_repository

    o = job.options
    return [write_repository(job.out, o.triton_variant, o.batch, o.triton_instances,
                             o.triton_accelerator, o.fp16)]


def fp16_fidelity(generator, fp16_model, m, num: int, batch: int = 32) -> dict:
    """KID and FID between the PyTorch float32 images and the FP16 model's, seeds 0..num-1 at
    the model's default truncation: what FP16 costs in the metric users judge models by."""
    from gantool.metrics.fid import collect, fid, kid
    from gantool.metrics.inception import InceptionFeatures
    from gantool.sampling.images import to_uint8
    from gantool.sampling.latent import batched

    extract = InceptionFeatures()
    chunks = [(latents(s, m.nz, m.prior, m.truncation),
               class_vectors(s, None, len(m.classes)) if m.classes else None,
               truncation_input(m.truncation, m.prior, len(s)))
              for s in batched(list(range(num)), batch)]

    def torch_images():
        for inputs in chunks:
            with torch.no_grad():
                yield to_uint8(run_generator(generator, *_tensors(*inputs)).numpy())

    def fp16_images():
        for inputs in chunks:
            out = _run(fp16_model, *inputs)
            yield out if out.dtype == np.uint8 else to_uint8(out)

    a, b = collect(torch_images(), extract), collect(fp16_images(), extract)
    k, k_std = kid(a.sample, b.sample, subset_size=min(num, 1000))
    return {"num": num, "kid": k, "kid_std": k_std, "fid": fid(a, b)}


def _verified(check: Check, log) -> Check:
    log(check.summary())
    if not check.ok:
        raise GantoolError(f"{check.artifact} failed verification against PyTorch: "
                           f"{'; '.join(check.problems)} (nothing was written for it)")
    return check


def _run(model, z: np.ndarray, c: np.ndarray | None, psi: np.ndarray | None) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, graph_inputs(z, c, psi))[0]


def _tensors(*inputs: np.ndarray | None) -> tuple[torch.Tensor | None, ...]:
    """The generator's inputs (z, c, psi) as tensors, None where absent."""
    return tuple(None if a is None else torch.from_numpy(a) for a in inputs)


def _sidecar(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


STEPS = {f.__name__: f for f in (build_onnx, build_engine, check_engine, build_triton,
                                   check_triton)}  # what the format rows name


def _check(options: ExportOptions) -> None:
    """The options' own ranges."""
    lo, opt, hi = options.batch
    if not 1 <= lo <= opt <= hi:
        raise OptionError("batch", f"needs 1 <= min <= opt <= max, got {lo},{opt},{hi}")
    if options.fidelity and not options.fp16:
        raise OptionError("fidelity", "measures the FP16 model: ask for fp16 too", see="fp16")
    if options.fidelity == 1:
        raise OptionError("fidelity", "needs at least 2 seeds")


def write_summary(out: Path, result: ExportResult) -> Path:
    """``out/export.json``: files written and the verification numbers."""
    path = out / RECORD
    info = ModelInfo.from_metadata(result.metadata)
    text = json.dumps({
        "files": [p.name for p in result.files],
        "hashes": {p.name: digest(p) for p in result.files if p.is_file()},
        "fp16_fidelity": result.fidelity,
        "model": {**{k: getattr(info, k) for k in ("resolution", "channels", "nz")},
                  "inputs": {name: a.shape[1] for name, a in graph_inputs(
                      np.zeros((1, info.nz)), np.zeros((1, len(info.classes))) if info.classes
                      else None, truncation_input(None, info.prior, 1)).items()}},
        "metadata": result.metadata,
        "checks": [{k: (None if isinstance(v, float) and v == float("inf") else v)
                    for k, v in c.__dict__.items()} for c in result.checks],
    }, indent=2) + "\n"
    with atomic_write(path) as f:
        f.write(text.encode())
    return path
