"""GAN losses on discriminator logits: (D loss, G loss) pairs by name, and the gradient
penalties. A G loss takes D's logits of the fakes and, for a relativistic loss (``PAIRED``),
of the reals of the same step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gantool.config import LOSSES as LOSS_NAMES

# (real target, fake target) for the discriminator; the generator always aims at real (1).
# Hinge has no targets and ignores them.
LABEL_TARGETS = {"hard": (1.0, 0.0), "one-sided": (0.9, 0.0), "two-sided": (0.9, 0.1)}


def d_loss_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, labels: str = "hard"):
    """Discriminator BCE on logits, with the label targets named by ``labels``."""
    real_t, fake_t = LABEL_TARGETS[labels]
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_t))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.full_like(fake_logits, fake_t))
    return real + fake


def g_loss_bce(fake_logits: torch.Tensor, real_logits=None) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def d_loss_lsgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, labels: str = "hard"):
    """Least squares (Mao et al.): 0.5 (D(x) - real)^2 + 0.5 (D(G(z)) - fake)^2."""
    real_t, fake_t = LABEL_TARGETS[labels]
    return 0.5 * ((real_logits - real_t).pow(2).mean() + (fake_logits - fake_t).pow(2).mean())


def g_loss_lsgan(fake_logits: torch.Tensor, real_logits=None) -> torch.Tensor:
    return 0.5 * (fake_logits - 1).pow(2).mean()


def d_loss_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor, labels: str = "hard"):
    """Hinge: relu(1 - D(x)) + relu(1 + D(G(z))); label targets do not apply."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_loss_hinge(fake_logits: torch.Tensor, real_logits=None) -> torch.Tensor:
    return -fake_logits.mean()


def d_loss_wgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, labels: str = "hard"):
    """Wasserstein critic loss D(G(z)) - D(x); the gradient penalty is added by the loop
    (``gradient_penalty``); label targets do not apply."""
    return fake_logits.mean() - real_logits.mean()


def g_loss_wgan(fake_logits: torch.Tensor, real_logits=None) -> torch.Tensor:
    return -fake_logits.mean()


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad D(x_hat)||_2 - 1)^2] at random points
    x_hat on lines between real and fake images. Computed in fp32."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (eps * real.float() + (1 - eps) * fake.float()).requires_grad_(True)
    out = D(x_hat).float()
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def d_loss_rpgan(real_logits: torch.Tensor, fake_logits: torch.Tensor, labels: str = "hard"):
    """Relativistic pairing (RpGAN; R3GAN, Huang et al. 2024): softplus(D(G(z)) - D(x)) over
    pairs of a real and a fake image of the step; label targets do not apply."""
    return F.softplus(fake_logits - real_logits).mean()


def g_loss_rpgan(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """G's side of the pairing: softplus(D(x) - D(G(z)))."""
    return F.softplus(real_logits - fake_logits).mean()


def squared_gradient(D, x: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] over the batch ``x``, kept in the graph (a penalty's backward goes
    through it): R1 on real images, R2 on generated ones (Mescheder et al. 2018; R3GAN adds
    them as gamma/2 times this). Computed in fp32."""
    x = x.detach().float().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).float().sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


# train.loss name (the config's list, in its order) -> (D loss, G loss)
LOSSES = dict(zip(LOSS_NAMES, ((d_loss_bce, g_loss_bce), (d_loss_lsgan, g_loss_lsgan),
                               (d_loss_hinge, g_loss_hinge), (d_loss_wgan, g_loss_wgan),
                               (d_loss_rpgan, g_loss_rpgan)),
                  strict=True))
PAIRED = ("rpgan",)  # losses whose G side also takes D's logits of the step's real images
