"""GAN losses on discriminator logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (real target, fake target) for the discriminator; the generator always aims at 1.
LABEL_TARGETS = {"hard": (1.0, 0.0), "one-sided": (0.9, 0.0), "two-sided": (0.9, 0.1)}


def d_loss_bce(real_logits: torch.Tensor, fake_logits: torch.Tensor, labels: str = "hard"):
    """Discriminator BCE on logits, with the label targets named by ``labels``."""
    real_t, fake_t = LABEL_TARGETS[labels]
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_t))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.full_like(fake_logits, fake_t))
    return real + fake


def g_loss_bce(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
