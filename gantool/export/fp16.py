"""FP16 ONNX: weights and activations in float16, float32 input and output kept.

GAN generators are known to overflow in fp16 (activations past 65,504 become inf). Where that
happens does not depend on the device that runs the model, so ``fp16_overflows`` finds it on
any machine: it runs the float32 model with every intermediate value exposed and names the
nodes whose values leave fp16's range. Those nodes can be kept in float32 (``keep_fp32``).
"""

from __future__ import annotations

import warnings

import numpy as np

FP16_MAX = 65504.0


def convert_fp16(model, keep_fp32: list[str] = ()):
    """An fp16 copy of ``model`` with float32 inputs/outputs; ``keep_fp32`` names nodes to leave
    in float32. The uint8 postprocessing (everything after the generator) stays in float32 so
    that the output bytes round exactly as in the float32 model."""
    from onnxconverter_common import float16

    names = {n.name for n in model.graph.node}
    unknown = [n for n in keep_fp32 if n not in names]
    if unknown:
        from gantool.errors import OptionError

        raise OptionError("keep_fp32", f"no node named {unknown[0]!r} in the model; the names "
                          "come from the overflow report of a failed fp16 export")
    block = list(keep_fp32) + postprocess_nodes(model)
    with warnings.catch_warnings():  # "number truncated to 1e-07": tiny weights, expected
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=block)


def postprocess_nodes(model) -> list[str]:
    """Nodes outside the generator module (the uint8 conversion), by their name scopes."""
    out = []
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props
                       if p.key == "pkg.torch.onnx.name_scopes"), "")
        if scopes and "'generator'" not in scopes:
            out.append(node.name)
    return out


def fp16_overflows(model, feeds: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    """Run the float32 ``model`` on ``feeds`` (``gantool.model_info.graph_inputs``), one image
    at a time, and list (node, op, max |value|) for every node that reads or writes a float
    value outside fp16's range, in graph order. Keeping exactly those in float32 keeps every
    out-of-range value (and every cast of one) out of fp16."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inferred = onnx.shape_inference.infer_shapes(probe)
    floats = {v.name for v in inferred.graph.value_info
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    present = {o.name for o in probe.graph.output}
    for name in sorted(floats - present):
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    peaks: dict[str, float] = {}
    # one image at a time: every intermediate value is held at once, which for 8 images of a
    # 1024 px StyleGAN2 is more than 24 GB
    for i in range(len(feeds["z"])):
        one = {k: v[i : i + 1] for k, v in feeds.items()}
        for name, value in [*zip(names, session.run(names, one)), *one.items()]:
            if value.dtype.kind == "f" and value.size:
                peak = float(np.max(np.abs(np.nan_to_num(value, nan=np.inf))))
                peaks[name] = max(peak, peaks.get(name, 0.0))
    found = []
    for node in probe.graph.node:
        peak = max((peaks.get(t, 0.0) for t in [*node.input, *node.output]), default=0.0)
        if peak > FP16_MAX:
            found.append((node.name, node.op_type, peak))
    return found
