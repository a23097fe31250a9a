"""Triton python model `generator` (cpu variant): z (and a conditional model's one-hot class)
-> uint8 images with ONNX Runtime.

Triton's dynamic batcher hands several requests at once; they run as one ONNX Runtime batch
(each image depends on its own z only) and are split back into one response per request.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        # args: Triton's own keys (its model's folder, not gantool.artifacts.REPOSITORY);
        # "onnx_file": gantool.export.triton.ONNX_FILE_PARAMETER (this file cannot import gantool)
        path = os.path.join(args["model_repository"], args["model_version"],
                            params["onnx_file"]["string_value"])
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", {}).get("string_value", "0"))
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]  # z (, class)

    def execute(self, requests):
        feeds = {name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
                 for name in self.inputs}
        zs = feeds["z"]
        try:
            images = self.session.run(None, {name: np.concatenate(parts).astype(np.float32)
                                             for name, parts in feeds.items()})[0]
        except Exception as e:  # noqa: BLE001 - every request of the batch gets the reason
            error = pb_utils.TritonError(f"ONNX Runtime failed: {e}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for z in zs:
            out = images[start : start + len(z)]
            start += len(z)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("image", np.ascontiguousarray(out))]))
        return responses
