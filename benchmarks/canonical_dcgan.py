"""The canonical DCGAN of pytorch/examples ``dcgan/main.py``, re-implemented plainly.

This module reproduces, as the baseline for ``benchmarks/train_step.py``:

* ``Generator``: ConvTranspose2d(nz, ngf*8, 4, 1, 0) -> BatchNorm2d -> ReLU, then
  ngf*8 -> ngf*4 -> ngf*2 -> ngf, each ConvTranspose2d(4, 2, 1) -> BatchNorm2d -> ReLU, then
  ConvTranspose2d(ngf, nc, 4, 2, 1) -> Tanh; every convolution has ``bias=False``.
  Input (B, nz, 1, 1), output (B, nc, 64, 64).
* ``Discriminator``: Conv2d(nc, ndf, 4, 2, 1) -> LeakyReLU(0.2), then ndf -> ndf*2 -> ndf*4 ->
  ndf*8, each Conv2d(4, 2, 1) -> BatchNorm2d -> LeakyReLU(0.2), then Conv2d(ndf*8, 1, 4, 1, 0)
  -> Sigmoid; ``bias=False``. Output: a probability per image, shape (B,).
* ``weights_init``: conv weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0.
* ``canonical_step``: the example's training iteration, in its order: D on the real batch
  (BCELoss, label 1) with its own backward, G(noise), D on ``fake.detach()`` (label 0) with its
  own backward, ``optimizerD.step()``; then D on ``fake`` (label 1) for G, backward,
  ``optimizerG.step()``. The D weight gradients computed during the G update are wasted there
  (``netD.zero_grad()`` discards them next iteration), exactly as in the example.
* ``make_optimizers``: Adam, lr 2e-4, betas (0.5, 0.999) for both nets.

At ``resolution=64`` (the default, the example's only size) the layer lists are exactly the
example's. Other resolutions 4 * 2**k (the benchmark's ``--tiny`` mode and its 1024 px run)
follow the same pattern with k up-/down-sampling stages: widths ngf*2**(k-1), ..., ngf, each
capped at ``max_channels`` when given (gantool caps at 512, so that 1024 px stays trainable; with
the cap both benchmark contenders train the same layer shapes; 64 px never reaches it).

Left out on purpose: the example's data loader, the ``.item()`` statistics (D_x, D_G_z1, D_G_z2)
and the per-iteration ``print``; they add host work and synchronisations, so leaving them out
makes this baseline faster, never slower. This module does not import gantool.
"""

from __future__ import annotations

import torch
from torch import nn

REAL_LABEL, FAKE_LABEL = 1.0, 0.0


def _stages(resolution: int) -> int:
    """k with resolution = 4 * 2**k, k >= 2 (64 px -> 4 stages)."""
    k, r = 0, resolution
    while r > 4 and r % 2 == 0:
        r, k = r // 2, k + 1
    if r != 4 or k < 2:
        raise ValueError(f"the canonical DCGAN needs resolution 4 * 2**k, k >= 2; got {resolution}")
    return k


def _widths(base: int, mults: list[int], max_channels: int | None) -> list[int]:
    """Channels per stage, base * mult, capped at ``max_channels`` when given."""
    return [min(base * m, max_channels or base * m) for m in mults]


class Generator(nn.Module):
    """noise (B, nz, 1, 1) -> image (B, nc, R, R) in [-1, 1]."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, resolution: int = 64,
                 max_channels: int | None = None):
        super().__init__()
        k = _stages(resolution)
        w = _widths(ngf, [2 ** (k - 1 - i) for i in range(k)], max_channels)  # 64 px: 8, 4, 2, 1
        layers: list[nn.Module] = [
            # input is Z, going into a convolution; state size (ngf*8) x 4 x 4 at 64 px
            nn.ConvTranspose2d(nz, w[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(w[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(w[:-1], w[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(w[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.main(input)


class Discriminator(nn.Module):
    """image (B, nc, R, R) -> probability (B,)."""

    def __init__(self, ndf: int = 64, nc: int = 3, resolution: int = 64,
                 max_channels: int | None = None):
        super().__init__()
        k = _stages(resolution)
        w = _widths(ndf, [2**i for i in range(k)], max_channels)  # 64 px: 1, 2, 4, 8
        layers: list[nn.Module] = [
            # input is (nc) x 64 x 64
            nn.Conv2d(nc, w[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in zip(w[:-1], w[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        # state size (ndf*8) x 4 x 4 at 64 px
        layers += [nn.Conv2d(w[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


def weights_init(m: nn.Module) -> None:
    """The example's custom init, applied with ``net.apply(weights_init)``."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


def build_generator(nz: int = 100, ngf: int = 64, nc: int = 3, resolution: int = 64,
                    device: str | torch.device = "cpu", max_channels: int | None = None
                    ) -> Generator:
    net = Generator(nz, ngf, nc, resolution, max_channels).to(device)
    net.apply(weights_init)
    return net


def build_discriminator(ndf: int = 64, nc: int = 3, resolution: int = 64,
                        device: str | torch.device = "cpu", max_channels: int | None = None
                        ) -> Discriminator:
    net = Discriminator(ndf, nc, resolution, max_channels).to(device)
    net.apply(weights_init)
    return net


def make_optimizers(netG: nn.Module, netD: nn.Module, lr: float = 2e-4,
                    beta1: float = 0.5) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """(optimizerG, optimizerD) as in the example."""
    optimizerD = torch.optim.Adam(netD.parameters(), lr=lr, betas=(beta1, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=lr, betas=(beta1, 0.999))
    return optimizerG, optimizerD


def build_all(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3, resolution: int = 64,
              device: str | torch.device = "cpu", max_channels: int | None = None):
    """(netG, netD, optimizerG, optimizerD), ready for ``canonical_step``."""
    netG = build_generator(nz, ngf, nc, resolution, device, max_channels)
    netD = build_discriminator(ndf, nc, resolution, device, max_channels)
    optimizerG, optimizerD = make_optimizers(netG, netD)
    return netG, netD, optimizerG, optimizerD


_criterion = nn.BCELoss()


def canonical_step(netG: nn.Module, netD: nn.Module, optG: torch.optim.Optimizer,
                   optD: torch.optim.Optimizer, real: torch.Tensor, nz: int
                   ) -> dict[str, torch.Tensor]:
    """One iteration of the example's loop on the batch ``real`` (B, nc, R, R) in [-1, 1].

    Returns the detached losses (errD = errD_real + errD_fake, errG); nothing is synchronised.
    """
    device = real.device
    ############################
    # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
    ###########################
    # train with real
    netD.zero_grad()
    batch_size = real.size(0)
    label = torch.full((batch_size,), REAL_LABEL, dtype=real.dtype, device=device)
    output = netD(real).view(-1)
    errD_real = _criterion(output, label)
    errD_real.backward()

    # train with fake
    noise = torch.randn(batch_size, nz, 1, 1, device=device)
    fake = netG(noise)
    label.fill_(FAKE_LABEL)
    output = netD(fake.detach()).view(-1)
    errD_fake = _criterion(output, label)
    errD_fake.backward()
    errD = errD_real + errD_fake
    optD.step()

    ############################
    # (2) Update G network: maximize log(D(G(z)))
    ###########################
    netG.zero_grad()
    label.fill_(REAL_LABEL)  # fake labels are real for generator cost
    output = netD(fake).view(-1)
    errG = _criterion(output, label)
    errG.backward()
    optG.step()
    return {"loss_d": errD.detach(), "loss_g": errG.detach()}
