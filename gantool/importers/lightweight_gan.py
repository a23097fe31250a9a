"""lightweight-gan checkpoints (``models/NAME/model_N.pt`` and ``.config.json`` beside it) ->
gantool's ``LightweightGANGenerator``.

The checkpoint is a dict ``{'GAN': state_dict, 'version', 'G_scaler', 'D_scaler'}`` read with
``torch.load(weights_only=True)``; the state dict holds G, D and GE (the EMA generator, which
the tool draws with). Its config file omits the latent size and the widest layer: every size is
read from the tensors' shapes, the config is only checked against them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gantool.errors import GantoolError
from gantool.importers.stylegan import Unexpected

SLE_MAP = {3: 7, 4: 8, 5: 9, 6: 10}  # the tool's skip-layer excitation: from res 2^r to 2^s
NOISE_SEED = 0  # the fixed noise maps: torch.Generator seeded so, one map per layer in order
BATCHNORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def read_checkpoint(path: Path, saved) -> dict:
    """The state dict of a lightweight-gan checkpoint (``torch.load``'s dict)."""
    state = saved.get("GAN") if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not any(k.startswith(("GE.", "G.")) for k in state):
        held = ", ".join(sorted(map(str, saved))[:6]) if isinstance(saved, dict) else "no dict"
        raise GantoolError(f"{path} is not a lightweight-gan or FastGAN-pytorch checkpoint (a "
                           f"dict with 'GAN', or with 'g' and 'g_ema'; it holds {held})")
    return state


def read_config(path: Path) -> dict:
    """``.config.json`` beside the checkpoint (the tool writes it), or {} when absent."""
    config = path.parent / ".config.json"
    if not config.is_file():
        return {}
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise GantoolError(f"{config} is not readable JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def _shape(state: dict, key: str, ndim: int) -> tuple[int, ...]:
    t = state.get(key)
    if not isinstance(t, torch.Tensor) or t.ndim != ndim:
        raise Unexpected(f"{key} is missing or not a {ndim}-D tensor")
    return tuple(t.shape)


def _layer(state: dict, p: str, i: int, layers: int, out: dict) -> dict:
    """Layer i's sizes (for arch_params) and its weights under gantool's names."""
    q = f"layers.{i}"
    chan_in = _shape(state, f"{p}layers.{i}.0.0.net.0.weight", 4)[1]
    two_out, c_in, kh, kw = _shape(state, f"{p}layers.{i}.0.2.1.weight", 4)
    if (c_in, kh, kw) != (chan_in, 4, 4) or two_out % 2:
        raise Unexpected(f"layer {i}'s convolution is {[two_out, c_in, kh, kw]}")
    spec = {"chan_in": chan_in, "chan_out": two_out // 2, "attn": 0, "sle": ""}
    names = {f"{q}.up.{n}": f"layers.{i}.0.0.net.0.{n}" for n in ("weight", "bias")}
    names.update({f"{q}.conv.{n}": f"layers.{i}.0.2.1.{n}" for n in ("weight", "bias")})
    names.update({f"{q}.norm.{n}": f"layers.{i}.0.4.{n}" for n in BATCHNORM})
    gate = f"{p}layers.{i}.1."
    if any(k.startswith(gate) for k in state):
        kind = "context" if f"{gate}to_k.weight" in state else "dct"
        out_res = SLE_MAP.get(i + 2)
        if out_res is None or out_res - 3 >= layers:
            raise Unexpected(f"layer {i} has a skip-layer gate the tool does not make")
        spec.update(sle=kind, sle_out=_shape(state, f"{gate}net.2.weight", 4)[0],
                    sle_hidden=_shape(state, f"{gate}net.0.weight", 4)[0], sle_to=out_res - 3)
        parts = ["to_k.weight", "to_k.bias"] if kind == "context" else ["dct_weights"]
        for n in [*parts, "net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]:
            names[f"{q}.gate.{n}"] = f"layers.{i}.1.{n}"
    attn = f"{p}layers.{i}.2."
    if f"{attn}fn.to_q.weight" in state:
        spec["attn"] = _shape(state, f"{attn}fn.to_q.weight", 4)[0] // 8
        names.update({f"{q}.attn.norm.g": f"layers.{i}.2.norm.g",
                      f"{q}.attn.norm.b": f"layers.{i}.2.norm.b",
                      f"{q}.attn.to_lin_kv_depthwise.weight": f"layers.{i}.2.fn.to_lin_kv.net.0"
                                                              ".weight",
                      f"{q}.attn.to_lin_kv.weight": f"layers.{i}.2.fn.to_lin_kv.net.1.weight"})
        for n in ("to_lin_q.weight", "to_q.weight", "to_kv.weight", "to_out.weight",
                  "to_out.bias"):
            names[f"{q}.attn.{n}"] = f"layers.{i}.2.fn.{n}"
    for ours, theirs in names.items():
        if f"{p}{theirs}" not in state:
            raise Unexpected(f"{p}{theirs} is missing")
        out[ours] = state[f"{p}{theirs}"]
    return spec


def lightweight_gan_generator(path: Path, saved) -> tuple[dict, dict]:
    """(ModelConfig values, weights) of gantool's LightweightGANGenerator for a checkpoint
    (``torch.load``'s dict) at ``path``."""
    state, config = read_checkpoint(path, saved), read_config(path)
    p = "GE." if any(k.startswith("GE.") for k in state) else "G."
    nz = _shape(state, f"{p}initial_conv.0.weight", 4)[0]
    out = {"initial.weight": state[f"{p}initial_conv.0.weight"],
           "initial.bias": state[f"{p}initial_conv.0.bias"]}
    out.update({f"initial_norm.{n}": state[f"{p}initial_conv.1.{n}"] for n in BATCHNORM})
    count = 0
    while f"{p}layers.{count}.0.0.net.0.weight" in state:
        count += 1
    if count == 0:
        raise Unexpected("it has no upsampling layers")
    specs = [_layer(state, p, i, count, out) for i in range(count)]
    channels = _shape(state, f"{p}out_conv.weight", 4)[0]
    if channels not in (1, 3):
        raise Unexpected(f"it draws {channels}-channel images (transparent ones?); gantool "
                         "draws 1 or 3 channels")
    resolution = 2 ** (count + 2)
    if config.get("image_size") not in (None, resolution):
        raise Unexpected(f"its config says {config['image_size']} px, its layers "
                         f"{resolution} px")
    out.update({"out.weight": state[f"{p}out_conv.weight"],
                "out.bias": state[f"{p}out_conv.bias"]})
    g = torch.Generator().manual_seed(NOISE_SEED)
    for i in range(count):
        r, strength = 2 ** (i + 3), state.get(f"{p}layers.{i}.0.3.weight")
        if not isinstance(strength, torch.Tensor) or strength.shape != (1,):
            raise Unexpected(f"{p}layers.{i}.0.3.weight (the noise strength) is missing")
        out[f"layers.{i}.noise"] = strength * torch.randn(1, 1, r, r, generator=g)
    model = {"arch": "lightweight-gan", "resolution": resolution, "channels": channels,
             "nz": nz, "classes": [], "prior": "normal", "arch_params": {"layers": specs}}
    return model, out
