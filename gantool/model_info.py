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
# (B, 1) float32 (gantool.latent.truncation_input)
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
    # of the generator's weights it was exported from (models.checkpoint.weights_sha256): the
    # model's identity in a render's manifest; "" in an export from an older gantool
    weights_sha256: str = ""

    @classmethod
    def from_model(cls, m, config: dict, output: str = "uint8", step: int | None = None,
                   weights: str = "") -> ModelInfo:
        """The description of the generator ``m`` (a ModelConfig) describes, trained by the run
        whose stored configuration is ``config``; ``weights``: its weights' SHA-256."""
        import gantool

        config_json = json.dumps(config, sort_keys=True)
        return cls(m.resolution, m.channels, m.nz, m.prior, m.truncation, output, m.arch,
                   gantool.__version__, hashlib.sha256(config_json.encode()).hexdigest(), step,
                   tuple(m.classes), weights)

    def to_metadata(self) -> dict[str, str]:
        values = asdict(self)
        values["truncation"] = "none" if self.truncation is None else self.truncation
        values["train_step"] = "" if self.train_step is None else self.train_step
        values["classes"] = json.dumps(list(self.classes))
        return {PREFIX + k: str(v) for k, v in values.items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "the model") -> ModelInfo:
        """Read ``to_metadata``'s map back (keys with or without the prefix); a one-line error
        when it does not describe a gantool model, or naming the key whose value is wrong."""
        raw = {k.removeprefix(PREFIX): v for k, v in meta.items()} if isinstance(
            meta, dict) else {}
        missing = [k for k in REQUIRED if k not in raw]
        if len(missing) == len(REQUIRED):
            raise GantoolError(f"{source} carries no gantool model description (resolution, "
                               "channels, nz, prior, truncation); export it with gantool "
                               "export")
        if missing:
            raise GantoolError(f"{source}: {PREFIX}{missing[0]} is missing; export it again")
        values = {f.name: _parsed(f.name, raw[f.name], source) for f in fields(cls)
                  if f.name in raw}
        from gantool.latent import validate_truncation

        try:
            validate_truncation(values["truncation"], values["prior"])
        except ValueError as e:
            raise GantoolError(f"{source}: {PREFIX}truncation: {e}; export it again") from None
        return cls(**values)

    def as_dict(self) -> dict:
        return asdict(self)


REQUIRED = ("resolution", "channels", "nz", "prior", "truncation")


def _whole(text: str, least: int) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < least:
        raise ValueError(f"a whole number >= {least}")
    return int(text)


def _one_of(text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise ValueError(f"one of {', '.join(allowed)}")
    return text


def _names(text: str) -> tuple[str, ...]:
    try:
        names = json.loads(text or "[]")
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("a JSON list of class names")
    return tuple(names)


def _truncation(text: str) -> float | None:
    try:
        return None if text == "none" else float(text)
    except ValueError:
        raise ValueError('a number or "none"') from None


def _parsers() -> dict:
    """Each metadata value's reader: the value from its text, or ValueError(what it must be)."""
    from gantool.latent import PRIORS

    return {"resolution": lambda t: _whole(t, 1), "channels": lambda t: _whole(t, 1),
            "nz": lambda t: _whole(t, 1), "prior": lambda t: _one_of(t, PRIORS),
            "truncation": _truncation, "output": lambda t: _one_of(t, OUTPUTS),
            "train_step": lambda t: None if t == "" else _whole(t, 0), "classes": _names}


def _parsed(key: str, text, source: str):
    """The value of metadata ``key``, or a one-line error naming the key and the source."""
    try:
        if not isinstance(text, str):
            raise ValueError("a string")
        return _parsers().get(key, str)(text)
    except ValueError as e:
        shown = text if not isinstance(text, str) or len(text) <= 40 else text[:37] + "..."
        raise GantoolError(f"{source}: {PREFIX}{key} is {shown!r}, not {e}; export it "
                           "again") from None


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


def read_plan_sidecar(path: str | Path) -> tuple[ModelInfo, dict]:
    """A TensorRT plan's ``.plan.json`` sidecar: the model it describes, and the whole record
    (profile, versions), checked; a one-line error naming the file and the key otherwise."""
    from gantool.fileio import COUNT, read_record

    record = read_record(path, {"metadata": {"*": str}, "profile?": {"*": {"*": [COUNT]}}},
                         hint="export it again")
    return ModelInfo.from_metadata(record["metadata"], str(path)), record
