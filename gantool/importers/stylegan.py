"""An NVIDIA StyleGAN2 or StyleGAN3 generator (as ``nvidia.read_pickle`` leaves it) -> gantool's
``StyleGAN2Generator`` / ``StyleGAN3Generator``: its hyper-parameters and weights, with each
layer's runtime gains multiplied into its weights. Every tensor is checked against the shape
the hyper-parameters give, so a pickle that does not describe the network it claims is refused
in one line.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gantool.errors import GantoolError
from gantool.importers.nvidia import Persistent
from gantool.models.stylegan2 import ARCHITECTURES, fir_filter

MAX_SIZE = 16384  # px: no generator gantool imports draws or pads more


class Unexpected(GantoolError):
    """The generator's tensors or settings are not those of a network gantool rebuilds."""


def _need(node: Persistent | None, what: str) -> Persistent:
    if not isinstance(node, Persistent):
        raise Unexpected(f"it has no {what}")
    return node


def _tensor(node: Persistent, name: str, shape: tuple, where: str) -> torch.Tensor:
    t = node.tensor(name)
    if t is None:
        raise Unexpected(f"{where}.{name} is missing")
    if tuple(t.shape) != tuple(shape):
        raise Unexpected(f"{where}.{name} has shape {list(t.shape)}, expected {list(shape)}")
    return t


def _int(node: Persistent, key: str, where: str) -> int:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unexpected(f"{where}.{key} is {value!r}, not a size")
    return value


def _dense(node: Persistent, n_in: int, n_out: int, where: str, activation: str,
           scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A fully connected layer's effective weight and bias (gains, and ``scale``, applied)."""
    if node.get("activation") != activation:
        raise Unexpected(f"{where} uses the {node.get('activation')!r} activation; gantool "
                         f"rebuilds {activation!r} here")
    w = _tensor(node, "weight", (n_out, n_in), where) * float(node.get("weight_gain", 1.0))
    b = _tensor(node, "bias", (n_out,), where)
    if float(node.get("bias_gain", 1.0)) != 1:
        b = b * float(node["bias_gain"])
    if scale != 1:
        w, b = w * scale, b * scale
    return {"weight": w, "bias": b}


def _put(out: dict, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
    out.update({f"{prefix}.{k}": v for k, v in tensors.items()})


def _mapping(g: Persistent, out: dict) -> dict:
    m = _need(g.child("mapping"), "mapping network")
    z_dim, c_dim, w_dim = (_int(g, k, "G") for k in ("z_dim", "c_dim", "w_dim"))
    layers = _int(m, "num_layers", "mapping")
    embed = 0
    if c_dim:
        e = _need(m.child("embed"), "class embedding")
        embed = _int(e, "out_features", "mapping.embed")
        _put(out, "mapping.embed", _dense(e, c_dim, embed, "mapping.embed", "linear"))
    fc0 = _need(m.child("fc0"), "mapping layer fc0")
    width = _int(fc0, "out_features", "mapping.fc0") if layers > 1 else w_dim
    widths = [z_dim + embed] + [width] * (layers - 1) + [w_dim]
    for i in range(layers):
        node = _need(m.child(f"fc{i}"), f"mapping layer fc{i}")
        _put(out, f"mapping.fcs.{i}", _dense(node, widths[i], widths[i + 1], f"mapping.fc{i}",
                                             "lrelu"))
    out["mapping.w_avg"] = _tensor(m, "w_avg", (w_dim,), "mapping")
    return {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "mapping_layers": layers,
            "embed_features": embed or None, "layer_features": width}


def _layer(node: Persistent, n_in: int, n_out: int, w_dim: int, res: int, where: str,
           out: dict, prefix: str) -> tuple:
    """A synthesis layer; returns the settings every layer must share (clamp, noise)."""
    if node.get("activation") != "lrelu":
        raise Unexpected(f"{where} uses the {node.get('activation')!r} activation; gantool "
                         "rebuilds lrelu")
    _put(out, f"{prefix}.affine", _dense(_need(node.child("affine"), f"{where}.affine"), w_dim,
                                         n_in, f"{where}.affine", "linear"))
    out[f"{prefix}.weight"] = _tensor(node, "weight", (n_out, n_in, 3, 3), where)
    out[f"{prefix}.bias"] = _tensor(node, "bias", (n_out,), where)
    use_noise = bool(node.get("use_noise"))
    if use_noise:
        strength = _tensor(node, "noise_strength", (), where)
        out[f"{prefix}.noise"] = _tensor(node, "noise_const", (res, res), where) * strength
    return node.get("conv_clamp"), use_noise


def _filters_agree(node: Persistent, f: torch.Tensor, where: str) -> None:
    own = node.tensor("resample_filter")
    if own is not None and (own.shape != f.shape or not torch.equal(own, f)):
        raise Unexpected(f"{where} resamples with another filter than [1, 3, 3, 1]; gantool "
                         "rebuilds that one only")


def _block(b: Persistent, res: int, n_in: int, n_out: int, hp: dict, out: dict,
           is_last: bool) -> set:
    where, prefix, w_dim = f"synthesis.b{res}", f"blocks.{res}", hp["w_dim"]
    f = fir_filter()
    _filters_agree(b, f, where)
    settings = set()
    if n_in == 0:
        out[f"{prefix}.const"] = _tensor(b, "const", (n_out, 4, 4), where)
    else:
        conv0 = _need(b.child("conv0"), f"{where}.conv0")
        _filters_agree(conv0, f, f"{where}.conv0")
        settings.add(_layer(conv0, n_in, n_out, w_dim, res, f"{where}.conv0", out,
                            f"{prefix}.conv0"))
    settings.add(_layer(_need(b.child("conv1"), f"{where}.conv1"), n_out, n_out, w_dim, res,
                        f"{where}.conv1", out, f"{prefix}.conv1"))
    torgb = b.child("torgb")
    if (torgb is not None) != (is_last or hp["architecture"] == "skip"):
        raise Unexpected(f"{where} {'has' if torgb is not None else 'lacks'} a toRGB layer, "
                         f"unlike a {hp['architecture']} generator")
    if torgb is not None:
        gain = float(torgb.get("weight_gain", 1.0))
        _put(out, f"{prefix}.torgb.affine", _dense(_need(torgb.child("affine"), "affine"),
                                                   w_dim, n_out, f"{where}.torgb.affine",
                                                   "linear", scale=gain))
        out[f"{prefix}.torgb.weight"] = _tensor(torgb, "weight", (hp["img_channels"], n_out, 1,
                                                                  1), f"{where}.torgb")
        out[f"{prefix}.torgb.bias"] = _tensor(torgb, "bias", (hp["img_channels"],),
                                              f"{where}.torgb")
        settings.add((torgb.get("conv_clamp"), None))
    skip = b.child("skip")
    if n_in and hp["architecture"] == "resnet":
        skip = _need(skip, f"{where}.skip")
        w = _tensor(skip, "weight", (n_out, n_in, 1, 1), f"{where}.skip")
        out[f"{prefix}.skip.weight"] = w * float(skip.get("weight_gain", 1.0))
    return settings


def stylegan2_generator(g: Persistent) -> tuple[dict, dict[str, torch.Tensor]]:
    """(ModelConfig values, weights) of gantool's StyleGAN2Generator for NVIDIA's ``g``."""
    out: dict[str, torch.Tensor] = {}
    hp = _mapping(g, out)
    s = _need(g.child("synthesis"), "synthesis network")
    resolution = _int(g, "img_resolution", "G")
    hp["img_channels"] = _int(g, "img_channels", "G")
    if (resolution < 4 or resolution > MAX_SIZE or resolution & (resolution - 1)
            or hp["img_channels"] not in (1, 3)):
        raise Unexpected(f"it draws {resolution} px images with {hp['img_channels']} channels; "
                         "gantool rebuilds powers of two from 4 px, 1 or 3 channels")
    blocks = {r: _need(s.child(f"b{r}"), f"block b{r}")
              for r in (2**i for i in range(2, int(math.log2(resolution)) + 1))}
    hp["architecture"] = blocks[resolution].get("architecture")
    if hp["architecture"] not in ARCHITECTURES:
        raise Unexpected(f"its architecture is {hp['architecture']!r}; gantool rebuilds "
                         f"{', '.join(ARCHITECTURES)}")
    widths = {r: int(_tensor(b, "const", (b.tensor("const").shape[0], 4, 4), f"b{r}").shape[0])
              if r == 4 else int(_need(b.child("conv1"), f"b{r}.conv1").tensor("weight").shape[0])
              for r, b in blocks.items()}
    settings = set()
    for r, b in blocks.items():
        settings |= _block(b, r, widths[r // 2] if r > 4 else 0, widths[r], hp, out,
                           r == resolution)
    clamps = {c for c, _ in settings}
    noises = {n for _, n in settings if n is not None}
    if len(clamps) != 1 or len(noises) > 1:
        raise Unexpected("its layers clamp or add noise differently from one another")
    hp.update(channels={str(r): n for r, n in widths.items()}, conv_clamp=clamps.pop(),
              use_noise=noises.pop() if noises else False)
    out["fir"] = fir_filter()
    model = {"arch": "stylegan2", "resolution": resolution, "channels": hp.pop("img_channels"),
             "nz": hp.pop("z_dim"), "classes": [str(i) for i in range(hp.pop("c_dim"))],
             "prior": "stylegan", "arch_params": hp}
    return model, out


def _optional_filter(node: Persistent, name: str, taps: int, radial: bool, where: str):
    shape = (taps, taps) if radial else (taps,)
    return None if taps <= 1 else _tensor(node, name, shape, where)


def _alias_free_layer(node: Persistent, w_dim: int, where: str, prefix: str,
                      out: dict) -> dict:
    """A StyleGAN3 synthesis layer: its geometry (for arch_params) and weights."""
    n_in, n_out = _int(node, "in_channels", where), _int(node, "out_channels", where)
    torgb = bool(node.get("is_torgb"))
    spec = {"in_channels": n_in, "out_channels": n_out, "torgb": torgb,
            "kernel": _int(node, "conv_kernel", where), "up": _int(node, "up_factor", where),
            "down": _int(node, "down_factor", where), "up_taps": _int(node, "up_taps", where),
            "down_taps": _int(node, "down_taps", where),
            "down_radial": bool(node.get("down_radial")),
            "padding": [int(p) for p in node.get("padding") or ()]}
    if len(spec["padding"]) != 4 or max(map(abs, spec["padding"])) > MAX_SIZE:
        raise Unexpected(f"{where}.padding is {node.get('padding')!r}, not four sizes")
    if not (1 <= spec["up"] <= 16 and 1 <= spec["down"] <= 16 and spec["kernel"] <= 16
            and spec["up_taps"] <= 1024 and spec["down_taps"] <= 1024):
        raise Unexpected(f"{where}'s up/down factors, kernel or filters are out of range")
    k = spec["kernel"]
    weight = _tensor(node, "weight", (n_out, n_in, k, k), where)
    scale = 1.0
    if torgb:  # toRGB's styles are scaled by 1 / sqrt(fan in): folded into the affine
        scale = 1 / math.sqrt(n_in * k * k)
    else:  # each output channel's weights normalised to unit mean square, as the paper's code
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
    _put(out, f"{prefix}.affine", _dense(_need(node.child("affine"), f"{where}.affine"), w_dim,
                                         n_in, f"{where}.affine", "linear", scale=scale))
    out[f"{prefix}.weight"] = weight
    out[f"{prefix}.bias"] = _tensor(node, "bias", (n_out,), where)
    out[f"{prefix}.gain"] = _tensor(node, "magnitude_ema", (), where).rsqrt()
    for name, taps, radial in (("up_filter", spec["up_taps"], False),
                               ("down_filter", spec["down_taps"], spec["down_radial"])):
        f = _optional_filter(node, name, taps, radial, where)
        if f is not None:
            out[f"{prefix}.{name}"] = f
    return spec


def stylegan3_generator(g: Persistent) -> tuple[dict, dict[str, torch.Tensor]]:
    """(ModelConfig values, weights) of gantool's StyleGAN3Generator for NVIDIA's ``g``."""
    out: dict[str, torch.Tensor] = {}
    hp = _mapping(g, out)
    if hp.pop("layer_features") != hp["w_dim"] or hp.pop("embed_features") not in (
            None, hp["w_dim"]):
        raise Unexpected("its mapping layers are not all w_dim wide, unlike StyleGAN3's")
    s = _need(g.child("synthesis"), "synthesis network")
    resolution, channels = _int(g, "img_resolution", "G"), _int(g, "img_channels", "G")
    i = _need(s.child("input"), "Fourier-feature input")
    n = _int(i, "channels", "synthesis.input")
    size = [int(v) for v in np.asarray(i.get("size")).reshape(-1)]
    if len(set(size)) != 1 or not 1 <= size[0] <= MAX_SIZE or resolution > MAX_SIZE:
        raise Unexpected(f"its input is {size} px for {resolution} px images")
    hp["input"] = {"channels": n, "size": size[0],
                   "sampling_rate": float(i.get("sampling_rate")),
                   "bandwidth": float(i.get("bandwidth"))}
    _put(out, "input.affine", _dense(_need(i.child("affine"), "input.affine"), hp["w_dim"], 4,
                                     "synthesis.input.affine", "linear"))
    out["input.weight"] = _tensor(i, "weight", (n, n), "synthesis.input") / math.sqrt(n)
    out["input.transform"] = _tensor(i, "transform", (3, 3), "synthesis.input")
    out["input.freqs"] = _tensor(i, "freqs", (n, 2), "synthesis.input")
    out["input.phases"] = _tensor(i, "phases", (n,), "synthesis.input")
    names = s.get("layer_names")
    if not isinstance(names, list) or not names:
        raise Unexpected("its synthesis network lists no layers")
    hp["layers"] = [_alias_free_layer(_need(s.child(name), f"layer {name}"), hp["w_dim"],
                                      f"synthesis.{name}", f"layers.{k}", out)
                    for k, name in enumerate(names)]
    clamps = {s.child(name).get("conv_clamp") for name in names}
    if len(clamps) != 1:
        raise Unexpected("its layers clamp differently from one another")
    last = hp["layers"][-1]
    if not last["torgb"] or last["out_channels"] != channels:
        raise Unexpected("its last layer is not a toRGB layer of the image's channels")
    hp.update(conv_clamp=clamps.pop(), output_scale=float(s.get("output_scale", 1.0)))
    model = {"arch": "stylegan3", "resolution": resolution, "channels": channels,
             "nz": hp.pop("z_dim"), "classes": [str(c) for c in range(hp.pop("c_dim"))],
             "prior": "stylegan", "arch_params": hp}
    return model, out
