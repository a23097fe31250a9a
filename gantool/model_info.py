"""What a deployed model says about itself, as one typed value.

``ModelInfo`` is written and read the same way everywhere a model leaves PyTorch: the ONNX
file's metadata, the TensorRT plan's ``.plan.json`` sidecar, ``export.json`` and the Triton
repository's ``gantool.json``, all as the string map ``to_metadata`` makes (keys prefixed
``gantool.``, "none" for no truncation, "" for no training step).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gantool.errors import GantoolError

PREFIX = "gantool."
OUTPUTS = ("uint8", "float")  # what an exported graph returns
CLASS_INPUT = "class"  # a conditional graph's second input: (B, K) float32 one-hot rows
# the last input of a graph whose network applies its truncation (an imported StyleGAN): psi
# (B, 1) float32 (gantool.sampling.latent.truncation_input)
TRUNCATION_INPUT = "truncation"


@dataclass(frozen=True)
class ModelInfo:
    resolution: int
    channels: int
    nz: int
    prior: str
    truncation: float | None  # the default sampling truncation; None: the plain prior
    output: str = "uint8"  # uint8 (B, H, W, C) images, or float (B, C, H, W) in [-1, 1]
    arch: str = "dcgan"
    gantool_version: str = ""
    config_sha256: str = ""  # of the training configuration (provenance)
    train_step: int | None = None
    classes: tuple[str, ...] = ()  # a conditional model's class names (graph input "class")

    @classmethod
    def from_model(cls, m, config: dict, output: str = "uint8",
                   step: int | None = None) -> ModelInfo:
        """The description of the generator ``m`` (a ModelConfig) describes, trained by the run
        whose stored configuration is ``config``."""
        import gantool

        config_json = json.dumps(config, sort_keys=True)
        return cls(m.resolution, m.channels, m.nz, m.prior, m.truncation, output, m.arch,
                   gantool.__version__, hashlib.sha256(config_json.encode()).hexdigest(), step,
                   tuple(m.classes))

    def to_metadata(self) -> dict[str, str]:
        values = asdict(self)
        values["truncation"] = "none" if self.truncation is None else self.truncation
        values["train_step"] = "" if self.train_step is None else self.train_step
        values["classes"] = json.dumps(list(self.classes))
        return {PREFIX + k: str(v) for k, v in values.items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "the model") -> ModelInfo:
        """Read ``to_metadata``'s map back (keys with or without the prefix); a one-line error
        when it does not describe a gantool model."""
        raw = {k.removeprefix(PREFIX): v for k, v in meta.items()}
        try:
            values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
            for key in ("resolution", "channels", "nz"):
                values[key] = int(values[key])
            t = values["truncation"]
            values["truncation"] = None if t in ("none", None) else float(t)
            step = values.get("train_step")
            values["train_step"] = int(step) if step not in ("", None) else None
            names = json.loads(values.get("classes") or "[]")
            if not isinstance(names, list):
                raise TypeError("classes")
            values["classes"] = tuple(str(n) for n in names)
            return cls(**values)
        except (KeyError, ValueError, TypeError):
            raise GantoolError(f"{source} carries no gantool model description (resolution, "
                               "channels, nz, prior, truncation); export it with gantool "
                               "export") from None

    def as_dict(self) -> dict:
        return asdict(self)


def graph_inputs(z, c=None, psi=None) -> dict:
    """The feeds of an exported graph: ``z`` (B, nz), ``c`` (B, K) one-hot for a conditional
    one, ``psi`` (B, 1) for one whose network applies its truncation, all float32."""
    import numpy as np

    feeds = {"z": np.ascontiguousarray(z, dtype=np.float32)}
    for name, value in ((CLASS_INPUT, c), (TRUNCATION_INPUT, psi)):
        if value is not None:
            feeds[name] = np.ascontiguousarray(value, dtype=np.float32)
    return feeds


def read_onnx_metadata(path: str | Path) -> ModelInfo:
    """gantool's description of the model in an ONNX file (the onnx extra)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any parse error means "not an ONNX file"
        raise GantoolError(f"cannot read {path} as ONNX: {str(e).splitlines()[0]}") from None
    raw = {p.key: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}
    return ModelInfo.from_metadata(raw, f"{path} (an ONNX model)")
