"""Triton python model `latent`: seed + truncation -> z, by gantool's own latent.py; for a
conditional model also class -> onehot, the generator's class input.

Runs inside Triton's python backend (which provides triton_python_backend_utils); latent.py
beside this file is a copy of gantool/latent.py, so a seed names the same z here as in
the gantool CLI. Each request is answered on its own: a bad seed or truncation fails that
request only.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# latent.py: gantool.export.triton.LATENT_COPY (this file cannot import gantool)
from latent import (  # noqa: E402
    NETWORK_TRUNCATION,
    class_vectors,
    latent_row,
    validate_truncation,
)


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.nz = int(params["nz"]["string_value"])
        self.prior = params["prior"]["string_value"]
        self.classes = len(json.loads(params.get("classes", {}).get("string_value", "[]")))

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        seeds = pb_utils.get_input_tensor_by_name(request, "seed").as_numpy().reshape(-1)
        truncations = pb_utils.get_input_tensor_by_name(request, "truncation").as_numpy()
        truncations = truncations.reshape(-1)
        z = np.empty((len(seeds), self.nz), dtype=np.float32)
        for i, (seed, t) in enumerate(zip(seeds, truncations)):
            try:
                validate_truncation(float(t), self.prior)
                z[i] = latent_row(int(seed), self.nz, self.prior, float(t))
            except ValueError as e:
                return pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"row {i} (seed {int(seed)}): {e}"))
        outputs = [pb_utils.Tensor("z", z)]
        if self.prior in NETWORK_TRUNCATION:  # psi, applied by the generator network
            outputs.append(pb_utils.Tensor("psi", truncations.astype(np.float32)[:, None]))
        if self.classes:
            asked = pb_utils.get_input_tensor_by_name(request, "class").as_numpy().reshape(-1)
            try:
                onehot = class_vectors(list(seeds), [int(c) for c in asked], self.classes)
            except ValueError as e:
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
            outputs.append(pb_utils.Tensor("onehot", onehot))
        return pb_utils.InferenceResponse(output_tensors=outputs)
