"""``gantool import``: generators trained by other tools -> gantool checkpoint records.

A source file is read without running it (``nvidia``: a restricted unpickler), its network is
rebuilt as gantool's own (``gantool.models.stylegan2``) from its hyper-parameters and tensors,
and the record written says where it came from (``origin``: kind, file name, SHA-256, size), so
every command that takes a checkpoint takes it unchanged.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gantool.errors import GantoolError, OptionError

KINDS = ("auto", "stylegan2", "stylegan3")
TORCH_ZIP = b"PK\x03\x04"  # torch.save's zip container


def detect_kind(data: bytes, path) -> str:
    """The kind of generator file ``data`` is (its first bytes, then its contents)."""
    if data[:1] == b"\x80":  # a pickle (protocol 2 or later)
        return "nvidia"
    if data[:4] == TORCH_ZIP:
        raise GantoolError(f"{path} is a PyTorch checkpoint, not an NVIDIA network pickle; "
                           "gantool imports StyleGAN2/3 pickles (stylegan2-ada-pytorch, "
                           "stylegan3); a gantool checkpoint needs no import")
    raise GantoolError(f"{path} is not a generator file gantool imports (an NVIDIA StyleGAN2 "
                       "or StyleGAN3 network pickle, .pkl)")


def read_source(path: Path) -> tuple[bytes, dict]:
    """The file's bytes and its provenance (name, size, SHA-256); one-line errors for a path
    that cannot be read."""
    if not path.is_file():
        raise GantoolError(f"{path} does not exist" if not path.exists() else
                           f"{path} is not a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GantoolError(f"cannot read {path}: {e.strerror}") from None
    return data, {"file": path.name, "bytes": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()}


def convert(path: Path, kind: str = "auto") -> dict:
    """A gantool checkpoint record of the generator in ``path``, checked: the network is
    rebuilt, loaded strictly and run once."""
    from gantool.config import ModelConfig, RunConfig, model_config
    from gantool.importers import nvidia
    from gantool.importers.stylegan import (
        Unexpected,
        stylegan2_generator,
        stylegan3_generator,
    )
    from gantool.models.checkpoint import generator_from_state, record

    if kind not in KINDS:
        raise OptionError("kind", f"unknown kind {kind!r}; choose {', '.join(KINDS)}")
    data, origin = read_source(path)
    detect_kind(data, path)
    g = nvidia.generator_of(path, nvidia.read_pickle(path, data))
    synthesis = g.child("synthesis")
    found = "stylegan3" if synthesis is not None and synthesis.child("input") else "stylegan2"
    if kind not in ("auto", found):
        raise OptionError("kind", f"{kind}, but {path} holds a {found} generator")
    try:
        model, weights = (stylegan3_generator if found == "stylegan3" else
                          stylegan2_generator)(g)
    except Unexpected as e:
        raise GantoolError(f"{path}: not a {found} generator gantool can rebuild: "
                           f"{e}") from None
    model["classes"] = tuple(model["classes"])
    config = RunConfig(name=path.stem, model=ModelConfig(**model)).to_dict()
    model_config(config)  # the model section's own checks (what drawing needs)
    rec = record(config=config, G=weights, step=0,
                 origin={"kind": found, "tool": "NVIDIA network pickle", **origin})
    net = generator_from_state(rec, path).net
    _check_draws(net, model, path)
    return rec


def _check_draws(net, model: dict, path) -> None:
    """One image, finite: the weights make a working network."""
    import torch

    from gantool.sampling.latent import latents, truncation_input

    z = torch.from_numpy(latents([0], model["nz"], model["prior"]))
    c = torch.eye(len(model["classes"]))[:1] if model["classes"] else None
    psi = truncation_input(None, model["prior"], 1)
    with torch.no_grad():
        img = net(z, c, torch.from_numpy(psi))
    if not torch.isfinite(img).all():
        raise GantoolError(f"{path}: the rebuilt generator draws non-finite values; its "
                           "weights are damaged")


def import_generator(src: str | os.PathLike, out: str | os.PathLike, kind: str = "auto",
                     force: bool = False) -> dict:
    """Convert ``src`` and write the record to ``out`` (atomically; an existing file only with
    ``force``, never the source itself); returns the record."""
    from gantool.models.checkpoint import write_checkpoint

    src, out = Path(src), Path(out)
    if out.suffix.lower() != ".pt":
        raise OptionError("out", f"{out} should end in .pt (a gantool checkpoint)")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise OptionError("out", "is the source file itself; name a new .pt file")
    if out.is_dir():
        raise OptionError("out", f"{out} is a folder; name a .pt file")
    if out.exists() and not force:
        raise OptionError("out", f"{out} exists; name a new file", see="force")
    rec = convert(src, kind)
    write_checkpoint(rec, out)
    return rec
