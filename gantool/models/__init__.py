"""Network registry: build G and D from a ModelConfig."""

from __future__ import annotations

from torch import nn

from gantool.config import ModelConfig
from gantool.errors import ConfigError
from gantool.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gantool.models.fastgan import FastGANDiscriminator, FastGANGenerator
from gantool.models.layers import resolution_plan, supported_resolutions
from gantool.models.residual import ResidualGenerator

__all__ = ["build_generator", "build_discriminator", "check_networks", "resolution_plan",
           "run_generator", "supported_resolutions"]


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The generator described by ``cfg``: z (B, nz) -> image (B, C, R, R) in [-1, 1]; with
    ``cfg.classes``, also c (B, classes), a one-hot class per image."""
    k = len(cfg.classes)
    if cfg.arch == "dcgan":
        return DCGANGenerator(cfg.resolution, cfg.channels, cfg.nz, cfg.ngf, cfg.max_channels, k)
    if cfg.arch == "residual":
        return ResidualGenerator(cfg.resolution, cfg.channels, cfg.nz, cfg.ngf, cfg.max_channels,
                                 cfg.res_blocks, k)
    if cfg.arch == "fastgan":
        return FastGANGenerator(cfg.resolution, cfg.channels, cfg.nz, cfg.ngf, cfg.max_channels,
                                cfg.noise, k)
    if cfg.arch in ("stylegan2", "stylegan3"):
        from gantool.models.stylegan2 import StyleGAN2Generator
        from gantool.models.stylegan3 import StyleGAN3Generator

        net = StyleGAN2Generator if cfg.arch == "stylegan2" else StyleGAN3Generator
        try:
            return net(cfg.resolution, cfg.channels, cfg.nz, k, **cfg.arch_params)
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"model.arch_params do not describe a {cfg.arch} generator "
                              f"({e})") from None
    if cfg.arch in ("lightweight-gan", "fastgan-pytorch"):
        from gantool.models.fastgan_pytorch import FastGANPytorchGenerator
        from gantool.models.lightweight_gan import LightweightGANGenerator

        net = (LightweightGANGenerator if cfg.arch == "lightweight-gan" else
               FastGANPytorchGenerator)
        if k:
            raise ConfigError(f"a {cfg.arch} generator is not conditional")
        try:
            return net(cfg.resolution, cfg.channels, cfg.nz, **cfg.arch_params)
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"model.arch_params do not describe a {cfg.arch} generator "
                              f"({e})") from None
    raise ValueError(f"unknown architecture {cfg.arch!r}")


def run_generator(net: nn.Module, z, c=None, psi=None):
    """``net``'s images for z (and one-hot c of a conditional model, psi of one that applies
    its truncation: ``gantool.latent.truncation_input``)."""
    if getattr(net, "takes_psi", False):
        return net(z, c, psi)
    return net(z) if c is None else net(z, c)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    """The discriminator described by ``cfg``: image (B, C, R, R) -> logits (B,), or patch
    logits (B, N) for fastgan (every loss averages over them); with ``cfg.classes``, a projection
    discriminator that also takes c (B, classes)."""
    if cfg.d_arch in ("dcgan", "pooled"):
        return DCGANDiscriminator(cfg.resolution, cfg.channels, cfg.ndf, cfg.max_channels,
                                  cfg.d_dropout, cfg.d_mbstd, cfg.d_spectral_norm,
                                  pooled=cfg.d_arch == "pooled", head_dropout=cfg.d_dropout_head,
                                  classes=len(cfg.classes))
    if cfg.d_arch == "fastgan":
        return FastGANDiscriminator(cfg.resolution, cfg.channels, cfg.ndf, cfg.max_channels,
                                    cfg.d_spectral_norm, len(cfg.classes))
    raise ValueError(f"unknown discriminator architecture {cfg.d_arch!r}")


def check_networks(cfg: ModelConfig) -> None:
    """Build G and D on torch's meta device (no memory, no compute): the ConfigError of an
    unsupported model before anything slow (reading the data) runs."""
    import torch

    with torch.device("meta"):
        build_generator(cfg)
        build_discriminator(cfg)
