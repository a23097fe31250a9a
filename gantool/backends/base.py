"""The parts every backend shares: the Generator protocol (seeds + truncation, or z itself, in;
uint8 images out), the exported-graph runner, a conditional model's class inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from gantool.errors import GantoolError, OptionError, did_you_mean

PRECISIONS = ("fp32", "fp16", "bf16")  # the torch backend's network precisions


@runtime_checkable
class Generator(Protocol):
    """What every backend offers; images for a seed do not depend on the batch they are in.

    A backend may also offer ``generate_into(seeds, truncation, out)``, the same images written
    into a given uint8 (B, H, W, C) array: a render then draws straight into its writer's
    shared-memory slot and skips a copy (torch, Triton).
    """

    resolution: int
    channels: int
    nz: int
    prior: str
    default_truncation: float | None

    classes: tuple[str, ...]  # a conditional model's class names; () for an unconditional one
    # the SHA-256 of the weights it draws with (models.checkpoint.weights_sha256; "" where a
    # server does not say): what a render's manifest names the model by
    weights_sha256: str

    def generate(self, seeds: Sequence[int], truncation: float | None,
                 classes: Sequence[int] | None = None) -> np.ndarray:
        """uint8 images (B, H, W, C) for ``seeds`` at ``truncation`` (None: the plain prior);
        a conditional model's ``classes``, one index per seed (None: seed mod K, see
        ``gantool.latent.class_vectors``)."""
        ...

    def generate_z(self, z: np.ndarray, c: np.ndarray | None = None,
                   truncation: float | None = None) -> np.ndarray:
        """uint8 images (B, H, W, C) for latent vectors ``z`` (B, nz) float32 (and one-hot
        classes ``c`` (B, K) of a conditional model): what ``generate`` draws once the seeds are
        turned into z (a latent walk's frames lie between seeds). ``truncation``: the psi of a
        prior whose network applies it (``latent.truncation_input``); the other priors' z
        carries their truncation, and they ignore it."""
        ...


class ExportedGenerator:
    """``generate`` and ``generate_z`` of a backend that runs an exported graph through its
    ``run(z, c)`` (ONNX Runtime, TensorRT): uint8 outputs as they are, float ones converted."""

    nz: int
    prior: str
    classes: tuple[str, ...]

    def generate(self, seeds: Sequence[int], truncation: float | None,
                 classes: Sequence[int] | None = None) -> np.ndarray:
        from gantool.latent import latents

        return self.generate_z(latents(seeds, self.nz, self.prior, truncation),
                               class_input(self.classes, seeds, classes), truncation)

    def generate_z(self, z: np.ndarray, c: np.ndarray | None = None,
                   truncation: float | None = None) -> np.ndarray:
        from gantool.latent import truncation_input
        from gantool.sampling.images import to_uint8

        check_class_input(self.classes, c)
        out = self.run(z, c, truncation_input(truncation, self.prior, len(z)))
        return out if out.dtype == np.uint8 else to_uint8(out.astype(np.float32, copy=False))

    def run(self, z: np.ndarray, c: np.ndarray | None,
            psi: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError


class FixedClass:
    """A conditional generator drawn at one class, offering the Generator protocol as an
    unconditional one does (renders, sweeps and walks take it unchanged)."""

    def __init__(self, gen: Generator, index: int):
        self.gen, self.index = gen, index
        if hasattr(gen, "generate_into"):
            self.generate_into = lambda seeds, truncation, out: gen.generate_into(
                seeds, truncation, out, [index] * len(seeds))

    def __getattr__(self, name: str):
        return getattr(self.gen, name)

    def generate(self, seeds: Sequence[int], truncation: float | None) -> np.ndarray:
        return self.gen.generate(seeds, truncation, [self.index] * len(seeds))

    def generate_z(self, z: np.ndarray, *, truncation: float | None = None) -> np.ndarray:
        index = [self.index] * len(z)
        return self.gen.generate_z(z, class_input(self.gen.classes, index, index), truncation)


def model_prior(asked: str | None, own: str) -> str:
    """The prior to draw a model trained (or imported) with ``own`` by: ``asked`` if given; a
    one-line error where one applies its truncation in the network and the other in z."""
    from gantool.latent import NETWORK_TRUNCATION

    if asked and (asked in NETWORK_TRUNCATION) != (own in NETWORK_TRUNCATION):
        raise OptionError("prior", f"{asked} cannot draw this model, made for the {own} prior: "
                          "one truncates in the network, the other in z")
    return asked or own


def class_input(names: Sequence[str], seeds: Sequence[int],
                classes: Sequence[int] | None) -> np.ndarray | None:
    """The one-hot class input (B, K) for ``seeds`` of a model with class ``names`` (None for
    an unconditional model); one-line errors for a class given to an unconditional model or a
    class outside the model's."""
    from gantool.latent import class_vectors

    if not names:
        if classes is not None:
            raise GantoolError("this model is not conditional: it takes no class")
        return None
    try:
        return class_vectors(seeds, classes, len(names))
    except ValueError as e:
        raise GantoolError(str(e)) from None


def check_class_input(names: Sequence[str], c: np.ndarray | None) -> None:
    """A one-line error unless a conditional model (class ``names``) gets one-hot classes ``c``
    and an unconditional one gets none."""
    if (c is None) != (not names):
        raise GantoolError("a conditional model draws with a class (one-hot c), an "
                           "unconditional one without")


def class_indices(names: Sequence[str], asked: Sequence[str]) -> list[int]:
    """Class values (names, indices, comma lists, or ``all``) -> class indices of a model
    with class ``names``; a one-line error for a model without classes or an unknown class."""
    if not names:
        raise OptionError("class", "this model is not conditional (trained without class "
                          "labels): draw it without a class")
    lower = {n.lower(): i for i, n in enumerate(names)}
    out: list[int] = []
    for item in (v.strip() for text in asked for v in text.split(",") if v.strip()):
        if item.lower() == "all":
            out += range(len(names))
        elif item.lower() in lower:
            out.append(lower[item.lower()])
        elif item.isascii() and item.isdigit() and int(item) < len(names):
            out.append(int(item))
        else:
            shown = ", ".join(f"{i}={n}" for i, n in enumerate(names[:20]))
            more = ", ..." if len(names) > 20 else ""
            raise OptionError("class", f"{item!r} is not a class of this model"
                              f"{did_you_mean(item, names)}; its classes: {shown}{more}, or all")
    if not out:
        raise OptionError("class", f"needs a class name or index, e.g. 0, {names[0]} or all")
    return out
