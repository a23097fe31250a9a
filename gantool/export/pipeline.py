"""`gantool export`: checkpoint -> verified artifacts in one folder, by one dispatcher.

``export_checkpoint`` runs the builder of each format row (``gantool.export.FORMATS``) in
order. Each artifact is built in memory, verified against the PyTorch generator on fixed
seeds, and only then written (atomically), into a staging folder that replaces the output
folder once every format is done: a failed verification leaves no file behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from gantool.artifacts import PLAN, changed_files, plan_sidecar, write_record
from gantool.errors import GantoolError, OptionError
from gantool.export import FORMATS, ExportFormat, build_order, check_format_options
from gantool.export.folder import staged
from gantool.export.job import ExportJob, ExportOptions, ExportResult, tensors
from gantool.latent import class_vectors, latents, truncation_input
from gantool.model_info import ModelInfo, graph_inputs, read_plan_sidecar
from gantool.models import run_generator
from gantool.models.checkpoint import load_generator, weights_sha256

VERIFY_SEEDS = tuple(range(8))


def export_checkpoint(checkpoint: Path, out: Path, formats: list[ExportFormat], log=print,
                      **options) -> ExportResult:
    """Export ``checkpoint`` into ``out`` as ``formats`` (and the formats they are built from),
    ``options`` being ``ExportOptions`` fields: every option and machine checked first, then
    each format's builder in order, in a staging folder swapped into ``out`` once all of them
    are written and verified (``export.json`` describes them). ``log`` gets lines that name
    options as ``{name}``, as ``OptionError`` messages do."""
    opts = ExportOptions(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in options.items()})
    check_format_options(formats, opts)
    _check(opts)
    order = build_order(formats)
    for f in order:
        if f.check:
            f.check(opts)  # before any slow work: a clear error on the wrong machine
    with staged(out) as stage:
        job = _start(checkpoint, stage, opts, log)
        for f in order:
            job.result.files += f.builder(job)
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
        reference = run_generator(generator, *tensors(z, c, psi)).numpy()  # (8, C, H, W)
    info = ModelInfo.from_model(m, config, options.output, step, weights_sha256(generator))
    return ExportJob(out, options, generator, m, info, z, c, psi, reference, log)


def _keep_plan(old: Path, job: ExportJob) -> list[Path]:
    """The TensorRT plan already in the output folder (``deploy/build_engine.sh`` builds one on
    the serving machine), carried into this export when it was built from this same model
    (metadata equal) for this batch profile; anything else is replaced as a whole."""
    plan = old / PLAN
    sidecar = plan_sidecar(plan)
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
    """``out/export.json`` (``gantool.artifacts.write_record``): the files written, and the
    model and the verification numbers."""
    info = ModelInfo.from_metadata(result.metadata)
    return write_record(out, result.files, {
        "fp16_fidelity": result.fidelity,
        "model": {**{k: getattr(info, k) for k in ("resolution", "channels", "nz")},
                  "inputs": {name: a.shape[1] for name, a in graph_inputs(
                      np.zeros((1, info.nz)), np.zeros((1, len(info.classes))) if info.classes
                      else None, truncation_input(None, info.prior, 1)).items()}},
        "metadata": result.metadata,
        "checks": [{k: (None if isinstance(v, float) and v == float("inf") else v)
                    for k, v in c.__dict__.items()} for c in result.checks],
    })
