"""`gantool export`: checkpoint -> verified artifacts in one folder.

Each artifact is built in memory, verified against the PyTorch generator on fixed seeds, and
only then written (atomically): a failed verification leaves no file behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gantool.errors import GantoolError, OptionError
from gantool.export import ExportFormat
from gantool.export.folder import digest
from gantool.export.fp16 import FP16_MAX, convert_fp16, fp16_overflows
from gantool.export.onnx import export_onnx, save_model
from gantool.export.verify import Check, compare
from gantool.fileio import atomic_write
from gantool.model_info import ModelInfo, graph_inputs
from gantool.models.checkpoint import load_generator
from gantool.sampling.latent import class_vectors, latents

VERIFY_SEEDS = tuple(range(8))


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    fidelity: dict | None = None  # KID/FID between PyTorch's and the FP16 model's images


def export_checkpoint(checkpoint: Path, out: Path, formats: list[ExportFormat], fp16: bool = False,
                      output: str = "uint8", batch: tuple[int, int, int] = (1, 8, 64),
                      keep_fp32: list[str] = (), verify: bool = True, ema: bool = True,
                      workspace_gb: float = 4.0, fidelity_num: int = 0,
                      log=print) -> ExportResult:
    """Write ``out/model.onnx`` (+ ``model_fp16.onnx`` with ``fp16``) and/or ``out/model.plan``."""
    _check_batch(batch)
    names = [f.name for f in formats]
    if "engine" in names:
        from gantool.export.tensorrt import require_tensorrt

        require_tensorrt()  # before any slow work: a clear error on machines without it
    generator, m, config, step = load_generator(checkpoint, ema=ema)
    z = latents(VERIFY_SEEDS, m.nz, m.prior, m.truncation)  # (8, nz) float32
    c = class_vectors(VERIFY_SEEDS, None, len(m.classes)) if m.classes else None
    with torch.no_grad():
        reference = generator(*_tensors(z, c)).numpy()  # (8, C, H, W)
    result = ExportResult()
    model = export_onnx(generator, ModelInfo.from_model(m, config, output, step))
    result.metadata = _sidecar(model)
    if verify:
        result.checks.append(_verified(compare("model.onnx", "fp32", reference,
                                               _run(model, z, c)), log))
    save_model(model, out / "model.onnx")
    result.files.append(out / "model.onnx")
    fp16_model = None
    if fp16:
        fp16_model = convert_fp16(model, list(keep_fp32))
        if verify:
            check = compare("model_fp16.onnx", "fp16", reference, _run(fp16_model, z, c))
            over = fp16_overflows(model, graph_inputs(z, c))
            over = [o for o in over if o[0] not in keep_fp32]
            if over:
                node, op, peak = over[0]
                more = f" (and {len(over) - 1} later nodes)" if len(over) > 1 else ""
                problems = check.problems + (
                    f"node {node} ({op}) reaches {peak:.3g}, past fp16's {FP16_MAX:g}{more}; "
                    f"re-export with --keep-fp32 {','.join(o[0] for o in over)}",)
                check = Check(**{**check.__dict__, "problems": problems})
            result.checks.append(_verified(check, log))
        save_model(fp16_model, out / "model_fp16.onnx")
        result.files.append(out / "model_fp16.onnx")
        if fidelity_num:
            result.fidelity = fp16_fidelity(generator, fp16_model, m, fidelity_num)
            log(f"model_fp16.onnx fidelity on {fidelity_num} seeds: KID(torch fp32, fp16) "
                f"{result.fidelity['kid']:.2e} +- {result.fidelity['kid_std']:.1e}, FID "
                f"{result.fidelity['fid']:.3f}")
    if "engine" in names:
        from gantool.export.tensorrt import build_engine

        source = fp16_model if fp16 else model
        plan = build_engine(source, out / "model.plan", fp16=fp16, batch=batch, nz=m.nz,
                            workspace_gb=workspace_gb, metadata=_sidecar(model),
                            classes=len(m.classes))
        result.files += [plan, plan.with_suffix(".plan.json")]
        if verify:
            from gantool.export.tensorrt import EngineRunner

            result.checks.append(_verified(compare(
                "model.plan", "fp16" if fp16 else "fp32", reference,
                EngineRunner(plan).run(z, c)),
                log))
    return result


def fp16_fidelity(generator, fp16_model, m, num: int, batch: int = 32) -> dict:
    """KID and FID between the PyTorch float32 images and the FP16 model's, seeds 0..num-1 at
    the model's default truncation: what FP16 costs in the metric users judge models by."""
    from gantool.metrics.fid import collect, fid, kid
    from gantool.metrics.inception import InceptionFeatures
    from gantool.sampling.images import to_uint8
    from gantool.sampling.latent import batched

    extract = InceptionFeatures()
    chunks = [(latents(s, m.nz, m.prior, m.truncation),
               class_vectors(s, None, len(m.classes)) if m.classes else None)
              for s in batched(list(range(num)), batch)]

    def torch_images():
        for z, c in chunks:
            with torch.no_grad():
                yield to_uint8(generator(*_tensors(z, c)).numpy())

    def fp16_images():
        for z, c in chunks:
            out = _run(fp16_model, z, c)
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


def _run(model, z: np.ndarray, c: np.ndarray | None) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, graph_inputs(z, c))[0]


def _tensors(z: np.ndarray, c: np.ndarray | None) -> tuple[torch.Tensor, ...]:
    """The generator's inputs as tensors: (z,) or (z, c)."""
    return tuple(torch.from_numpy(a) for a in (z, c) if a is not None)


def _sidecar(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def _check_batch(batch: tuple[int, int, int]) -> None:
    lo, opt, hi = batch
    if not 1 <= lo <= opt <= hi:
        raise OptionError("batch", f"needs 1 <= min <= opt <= max, got {lo},{opt},{hi}")


def write_summary(out: Path, result: ExportResult) -> Path:
    """``out/export.json``: files written and the verification numbers."""
    path = out / "export.json"
    info = ModelInfo.from_metadata(result.metadata)
    text = json.dumps({
        "files": [p.name for p in result.files],
        "hashes": {p.name: digest(p) for p in result.files if p.is_file()},
        "fp16_fidelity": result.fidelity,
        "model": {k: getattr(info, k) for k in ("resolution", "channels", "nz")},
        "metadata": result.metadata,
        "checks": [{k: (None if isinstance(v, float) and v == float("inf") else v)
                    for k, v in c.__dict__.items()} for c in result.checks],
    }, indent=2) + "\n"
    with atomic_write(path) as f:
        f.write(text.encode())
    return path
