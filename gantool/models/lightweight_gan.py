"""The generator of lucidrains' lightweight-gan (the popular FastGAN implementation, MIT), for
drawing from imported checkpoints (``gantool import``); gantool does not train it.

z (B, latent) -> 4x4 by a transposed convolution, BatchNorm and GLU, normalised over channels;
then per doubling: optional attention (linear attention beside 3x3 neighbourhood attention, on
a channel-normalised input, added back), pixel-shuffle upsampling, a [1, 2, 1] blur, a 4x4
convolution, noise, BatchNorm and GLU; skip-layer excitation multiplies a later resolution's
channels by a gate computed from an earlier one (global context or DCT channel attention);
a 3x3 convolution to the image. Its images are in [0, 1] (the tool clamps there); gantool's
are in [-1, 1], so the output is mapped by 2x - 1.

The noise the tool draws afresh on every call is one fixed map per layer here (drawn at import,
stored in the checkpoint), so an image is a function of its z. BatchNorm uses its running
statistics, as the tool does when it draws (eval mode).

Hyper-parameters (``ModelConfig.arch_params``): ``layers``, one per doubling: ``chan_in``,
``chan_out``, ``attn`` (dim_head of its attention, 0: none), ``sle`` ("context", "dct" or "")
with ``sle_out`` (gate channels) and ``sle_to`` (the layer whose output it gates).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = 8


class ChanNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x):
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        return (x - x.mean(dim=1, keepdim=True)) / (var + self.eps).sqrt() * self.g + self.b


class Attention(nn.Module):
    """Linear attention over the whole map beside softmax attention over each 3x3
    neighbourhood, ``HEADS`` heads of ``dim_head``."""

    def __init__(self, dim: int, dim_head: int):
        super().__init__()
        inner = dim_head * HEADS
        self.dim_head, self.scale = dim_head, dim_head**-0.5
        self.norm = ChanNorm(dim)
        self.to_lin_q = nn.Conv2d(dim, inner, 1, bias=False)
        self.to_lin_kv_depthwise = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.to_lin_kv = nn.Conv2d(dim, inner * 2, 1, bias=False)
        self.to_q = nn.Conv2d(dim, inner, 1, bias=False)
        self.to_kv = nn.Conv2d(dim, inner * 2, 1, bias=False)
        self.to_out = nn.Conv2d(inner * 2, dim, 1)

    def _heads(self, t):  # (B, H*d, X, Y) -> (B*H, X*Y, d)
        b, _, x, y = t.shape
        return t.reshape(b * HEADS, self.dim_head, x * y).transpose(1, 2)

    def _merge(self, t, b, x, y):  # (B*H, X*Y, d) -> (B, H*d, X, Y)
        return t.transpose(1, 2).reshape(b, HEADS * self.dim_head, x, y)

    def forward(self, fmap):
        b, _, x, y = fmap.shape
        f = self.norm(fmap)
        lin_k, lin_v = self.to_lin_kv(self.to_lin_kv_depthwise(f)).chunk(2, dim=1)
        q = self._heads(self.to_lin_q(f)).softmax(dim=-1) * self.scale
        k, v = self._heads(lin_k).softmax(dim=-2), self._heads(lin_v)
        lin_out = F.gelu(self._merge(q @ (k.transpose(1, 2) @ v), b, x, y))
        q = self._heads(self.to_q(f)) * self.scale  # (BH, N, d)
        k, v = self.to_kv(f).chunk(2, dim=1)
        k, v = (F.pad(t.reshape(b * HEADS, self.dim_head, x, y), [1, 1, 1, 1]) for t in (k, v))
        shifts = [(i, j) for i in range(3) for j in range(3)]
        k = torch.stack([k[:, :, i:i + x, j:j + y] for i, j in shifts], 2)  # (BH, d, 9, X, Y)
        v = torch.stack([v[:, :, i:i + x, j:j + y] for i, j in shifts], 2)
        k = k.reshape(b * HEADS, self.dim_head, 9, x * y).permute(0, 3, 2, 1)  # (BH, N, 9, d)
        v = v.reshape(b * HEADS, self.dim_head, 9, x * y).permute(0, 3, 2, 1)
        sim = (k @ q.unsqueeze(3)).squeeze(3)  # (BH, N, 9)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        full_out = self._merge((attn.unsqueeze(2) @ v).squeeze(2), b, x, y)
        return self.to_out(torch.cat([lin_out, full_out], dim=1)) + fmap


class Gate(nn.Module):
    """Skip-layer excitation: a per-channel gate in (0, 1) from a feature map, pooled by a
    learned spatial softmax (``context``) or by fixed DCT weights (``dct``)."""

    def __init__(self, kind: str, chan_in: int, chan_out: int, hidden: int, width: int):
        super().__init__()
        if kind == "context":
            self.to_k = nn.Conv2d(chan_in, 1, 1)
        else:
            self.register_buffer("dct_weights", torch.zeros(1, chan_in, width, width))
        self.kind = kind
        self.net = nn.Sequential(nn.Conv2d(chan_in, hidden, 1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(hidden, chan_out, 1), nn.Sigmoid())

    def forward(self, x):
        if self.kind == "context":
            weights = self.to_k(x).flatten(2).softmax(dim=-1)  # (B, 1, N)
            pooled = (x.flatten(2) @ weights.transpose(1, 2)).unsqueeze(-1)  # (B, C, 1, 1)
        else:
            pooled = (x * self.dct_weights).sum(dim=[2, 3], keepdim=True)
        return self.net(pooled)


class Layer(nn.Module):
    def __init__(self, chan_in: int, chan_out: int, resolution: int, attn: int = 0,
                 sle: str = "", sle_out: int = 0, sle_hidden: int = 0, **_):
        super().__init__()
        self.attn = Attention(chan_in, attn) if attn else None
        self.up = nn.Conv2d(chan_in, chan_in * 4, 1)
        self.register_buffer("blur", torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,
                             persistent=False)
        self.conv = nn.Conv2d(chan_in, chan_out * 2, 4)
        # the fixed noise map times the layer's noise strength
        self.register_buffer("noise", torch.zeros(1, 1, resolution, resolution))
        self.norm = nn.BatchNorm2d(chan_out * 2)
        self.gate = (Gate(sle, chan_out, sle_out, sle_hidden, resolution) if sle else None)

    def forward(self, x):
        if self.attn is not None:
            x = self.attn(x)
        x = F.pixel_shuffle(F.silu(self.up(x)), 2)
        c = x.shape[1]
        x = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"),
                     self.blur[None, None].expand(c, 1, 3, 3), groups=c)
        x = self.conv(F.pad(x, [2, 1, 2, 1]))
        return F.glu(self.norm(x + self.noise), dim=1)


class LightweightGANGenerator(nn.Module):
    """z (B, latent) -> image (B, C, R, R) in about [-1, 1]."""

    def __init__(self, resolution: int, channels: int, nz: int, layers: list[dict]):
        super().__init__()
        self.classes = 0
        self.initial = nn.ConvTranspose2d(nz, nz * 2, 4)
        self.initial_norm = nn.BatchNorm2d(nz * 2)
        self.layers = nn.ModuleList(Layer(resolution=2 ** (i + 3), **spec)
                                    for i, spec in enumerate(layers))
        self.gate_to = {i: spec["sle_to"] for i, spec in enumerate(layers) if spec.get("sle")}
        self.out = nn.Conv2d(layers[-1]["chan_out"], channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.glu(self.initial_norm(self.initial(z[:, :, None, None])), dim=1)
        x = F.normalize(x, dim=1)
        gates = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if layer.gate is not None:
                gates[self.gate_to[i]] = layer.gate(x)
            if i in gates:
                x = x * gates.pop(i)
        return self.out(x) * 2 - 1  # the tool's [0, 1] as gantool's [-1, 1]
