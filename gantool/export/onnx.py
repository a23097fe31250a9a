"""The onnx format's builder: ``model.onnx``, and with fp16 ``model_fp16.onnx`` (its overflow
report, its fidelity when asked), each verified against PyTorch before it is written.

Light to import, as the formats table is: the graph export itself (``gantool.export.onnx_graph``,
torch) and the metrics are imported when a model is built.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gantool.artifacts import ONNX, ONNX_FP16
from gantool.errors import literal
from gantool.export.fp16 import FP16_MAX, convert_fp16, fp16_overflows
from gantool.export.job import ExportJob, run_graph, tensors, verified
from gantool.export.verify import Check, compare
from gantool.latent import class_vectors, latents, truncation_input
from gantool.model_info import graph_inputs


def build_onnx(job: ExportJob) -> list[Path]:
    """``model.onnx`` (+ ``model_fp16.onnx`` with fp16, and its fidelity when asked)."""
    from gantool.export.onnx_graph import export_onnx, save_model

    o, m, inputs = job.options, job.model, (job.z, job.c, job.psi)
    model = export_onnx(job.generator, job.info)
    job.result.metadata = {p.key: p.value for p in model.metadata_props}
    if o.verify:
        job.result.checks.append(verified(compare(ONNX, "fp32", job.reference,
                                                  run_graph(model, *inputs)), job.log))
    save_model(model, job.out / ONNX)
    job.onnx, files = model, [job.out / ONNX]
    if not o.fp16:
        return files
    fp16_model = job.onnx_fp16 = convert_fp16(model, list(o.keep_fp32))
    if o.verify:
        job.result.checks.append(verified(_fp16_check(job, fp16_model), job.log))
    save_model(fp16_model, job.out / ONNX_FP16)
    if o.fidelity:
        from gantool.metrics.fid import kid_text

        done = job.result.fidelity = fp16_fidelity(job.generator, fp16_model, m, o.fidelity)
        job.log(f"{ONNX_FP16} fidelity on {o.fidelity} seeds: KID(torch fp32, fp16) "
                f"{kid_text(done['kid'], done['kid_std'], done['num'], '.2e', '.1e')}, "
                f"FID {done['fid']:.3f}")
    return files + [job.out / ONNX_FP16]


def _fp16_check(job: ExportJob, fp16_model) -> Check:
    """The FP16 model against PyTorch, naming the nodes that leave fp16's range (and the
    option that keeps them in float32, as ``{keep_fp32}``)."""
    inputs = (job.z, job.c, job.psi)
    check = compare(ONNX_FP16, "fp16", job.reference, run_graph(fp16_model, *inputs))
    over = fp16_overflows(job.onnx, graph_inputs(*inputs))
    over = [o for o in over if o[0] not in job.options.keep_fp32]
    if over:
        node, op, peak = over[0]
        more = f" (and {len(over) - 1} later nodes)" if len(over) > 1 else ""
        problems = check.problems + (
            f"node {literal(node)} ({literal(op)}) reaches {peak:.3g}, past fp16's "
            f"{FP16_MAX:g}{more}; re-export with {{keep_fp32}} "
            f"{literal(','.join(o[0] for o in over))}",)
        check = Check(**{**check.__dict__, "problems": problems})
    return check


def fp16_fidelity(generator, fp16_model, m, num: int, batch: int = 32) -> dict:
    """KID and FID between the PyTorch float32 images and the FP16 model's, seeds 0..num-1 at
    the model's default truncation: what FP16 costs in the metric users judge models by."""
    import torch

    from gantool.latent import batched
    from gantool.metrics.fid import collect, fid, kid
    from gantool.metrics.inception import InceptionFeatures
    from gantool.models import run_generator
    from gantool.sampling.images import to_uint8

    extract = InceptionFeatures()
    chunks = [(latents(s, m.nz, m.prior, m.truncation),
               class_vectors(s, None, len(m.classes)) if m.classes else None,
               truncation_input(m.truncation, m.prior, len(s)))
              for s in batched(list(range(num)), batch)]

    def torch_images():
        for inputs in chunks:
            with torch.no_grad():
                yield to_uint8(run_generator(generator, *tensors(*inputs)).numpy())

    def fp16_images():
        for inputs in chunks:
            out = run_graph(fp16_model, *inputs)
            yield out if out.dtype == np.uint8 else to_uint8(out)

    a, b = collect(torch_images(), extract), collect(fp16_images(), extract)
    k, k_std = kid(a.sample, b.sample, subset_size=min(num, 1000))
    return {"num": num, "kid": k, "kid_std": k_std, "fid": fid(a, b)}
