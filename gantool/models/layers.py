"""Shared building blocks: the resolution plan, DCGAN weight initialisation, class-conditional
BatchNorm, and folding BatchNorm into convolutions for inference."""

from __future__ import annotations

import torch
from torch import nn

from gantool.errors import ConfigError

BASES = (3, 4, 5, 7)  # the spatial size of the first feature map (Radford used 4)
MIN_RESOLUTION, MAX_RESOLUTION = 28, 1024


def resolution_plan(resolution: int) -> tuple[int, int]:
    """Split ``resolution`` into (base, k) with resolution = base * 2**k, base in BASES, k >= 2.

    The generator starts from a base x base map and doubles k times; the discriminator mirrors it.
    Raises ConfigError naming the nearest supported resolutions.
    """
    r, k = resolution, 0
    while r % 2 == 0 and r // 2 >= min(BASES):
        r, k = r // 2, k + 1
    if r not in BASES or k < 2 or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        near = sorted(supported_resolutions(), key=lambda s: (abs(s - resolution), s))[:3]
        raise ConfigError(
            f"unsupported resolution {resolution}: use base*2^k with base in "
            f"{{{', '.join(map(str, BASES))}}} between {MIN_RESOLUTION} and {MAX_RESOLUTION}; "
            f"nearest: {', '.join(map(str, sorted(near)))}"
        )
    return r, k


def supported_resolutions() -> list[int]:
    """Every resolution the DCGAN family supports, ascending."""
    out = {b * 2**k for b in BASES for k in range(2, 12)}
    return sorted(s for s in out if MIN_RESOLUTION <= s <= MAX_RESOLUTION)


def feature_widths(resolution: int, width: int, max_channels: int) -> list[int]:
    """Channels of the feature maps at base*2**i for i = 0..k-1: width*2**(k-1-i), capped."""
    _, k = resolution_plan(resolution)
    return [min(max_channels, width * 2 ** (k - 1 - i)) for i in range(k)]


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: conv weights ~ N(0, 0.02); BatchNorm scale ~ N(1, 0.02), shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ClassBatchNorm(nn.Module):
    """Conditional BatchNorm (de Vries et al. 2017; StudioGAN's and BigGAN's generators):
    normalise without an affine of its own, then scale by 1 + gain(c) and shift by bias(c),
    where c is (B, classes), a one-hot class (or any mix of classes) and gain, bias are linear
    maps (a table row per class; DCGAN's N(0, 0.02) init keeps the scale near 1)."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(classes, channels, bias=False)
        self.bias = nn.Linear(classes, channels, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale = 1 + self.gain(c).to(x.dtype)  # (B, channels)
        shift = self.bias(c).to(x.dtype)
        return self.norm(x) * scale[:, :, None, None] + shift[:, :, None, None]


def batch_norm(channels: int, classes: int = 0) -> nn.Module:
    """A generator's BatchNorm: the plain one, or ``ClassBatchNorm`` for ``classes`` > 0."""
    return ClassBatchNorm(channels, classes) if classes else nn.BatchNorm2d(channels)


class ClassSequential(nn.Sequential):
    """``nn.Sequential`` (same layers, same state_dict keys) that hands the class input ``c`` to
    the layers that take one (``ClassBatchNorm``, or another ``ClassSequential``)."""

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, c) if isinstance(layer, ClassBatchNorm | ClassSequential) else layer(x)
        return x


class Projection(nn.Module):
    """The class term of a projection discriminator (Miyato & Koyama 2018): the inner product of
    a class embedding with D's spatially summed features, added to the unconditional logit. The
    inner products with every class's embedding are class scores as well: trained as a
    classifier they make the dual projection of P2GAN (Han et al. 2021)."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.embed = nn.Linear(classes, features, bias=False)  # column k: class k's embedding

    def spectral_norm(self) -> None:
        self.embed = nn.utils.parametrizations.spectral_norm(self.embed)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, F, H, W) features, c (B, classes) -> (the term (B,), class scores (B, K))."""
        scores = h.sum(dim=(2, 3)) @ self.embed.weight.to(h.dtype)  # (B, K)
        return (scores * c.to(h.dtype)).sum(dim=1), scores

def one_hot(labels: torch.Tensor, classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B,) class indices -> (B, classes) one-hot rows: the class input of a conditional pair."""
    return torch.nn.functional.one_hot(labels.long(), classes).to(dtype)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a (transposed) convolution inside an
    ``nn.Sequential`` into that convolution (weights scaled, a bias added), the BatchNorm
    becoming an Identity: what an exported graph does, exact in eval mode up to float rounding.
    Changes ``net`` in place (call on an eval-mode copy: training needs the BatchNorms)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if net.training:
        raise ValueError("fold_batchnorm needs a network in eval mode")
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, after = seq[i], seq[i + 1]
            # a ClassBatchNorm's normalisation folds; its class scale and shift stay
            bn = after.norm if isinstance(after, ClassBatchNorm) else after
            if (isinstance(conv, nn.Conv2d | nn.ConvTranspose2d)
                    and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                    and conv.groups == 1):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                seq[i] = fuse_conv_bn_eval(conv, bn, transpose=transpose)
                if after is bn:
                    seq[i + 1] = nn.Identity()
                else:
                    after.norm = nn.Identity()
    return net


def generator_cost(net: nn.Module, nz: int) -> tuple[int, int]:
    """(parameters, multiply-adds per image) of a generator, counted on a weightless copy on
    torch's meta device (no memory, no compute: a 1024 px model costs milliseconds)."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in net.parameters())
    meta = copy.deepcopy(net).to("meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        classes = getattr(net, "classes", 0)
        meta(torch.zeros(1, nz, device="meta"),
             *([torch.zeros(1, classes, device="meta")] if classes else []))
    return params, counter.get_total_flops() // 2
