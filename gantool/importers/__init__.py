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

from gantool.errors import GantoolError, OptionError, first_line

KINDS = ("auto", "stylegan2", "stylegan3", "lightweight-gan", "fastgan")
TORCH_ZIP = b"PK\x03\x04"  # torch.save's zip container
TOOLS = {"stylegan2": "NVIDIA network pickle", "stylegan3": "NVIDIA network pickle",
         "lightweight-gan": "lightweight-gan checkpoint",
         "fastgan": "FastGAN-pytorch checkpoint"}


def container(data: bytes, path) -> str:
    """``pickle`` (an NVIDIA network pickle) or ``torch`` (a torch.save file), from the first
    bytes."""
    if data[:1] == b"\x80":  # a pickle (protocol 2 or later)
        return "pickle"
    if data[:4] == TORCH_ZIP:
        return "torch"
    raise GantoolError(f"{path} is not a generator file gantool imports (an NVIDIA StyleGAN2/3 "
                       "network pickle .pkl, a lightweight-gan model_N.pt or a FastGAN-pytorch "
                       "all_N.pth)")


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
    if kind not in KINDS:
        raise OptionError("kind", f"unknown kind {kind!r}; choose {', '.join(KINDS)}")
    _check_torch()
    data, origin = read_source(path)
    found = kind if kind != "auto" else ""
    try:
        found, read = _reader(data, path)
        if kind not in ("auto", found):
            raise OptionError("kind", f"{kind}, but {path} holds a {found} generator")
        return _rebuild(path, found, read, origin)
    except GantoolError:
        raise
    except Exception as e:  # noqa: BLE001 - a value of a form no check foresaw: the file's fault
        what = f"{found} generator" if found else "generator"
        raise GantoolError(f"{path}: not a {what} gantool can rebuild: {first_line(e)}") from None


def _rebuild(path: Path, found: str, read, origin: dict) -> dict:
    """The checked record: converted, rebuilt, loaded strictly, run once."""
    from gantool.config import ModelConfig, RunConfig, model_config
    from gantool.importers.stylegan import Unexpected
    from gantool.models.checkpoint import generator_from_state, record

    try:
        model, weights = read()
    except Unexpected as e:
        raise GantoolError(f"{path}: not a {found} generator gantool can rebuild: "
                           f"{e}") from None
    model["classes"] = tuple(model["classes"])
    name = path.stem
    if found == "lightweight-gan":  # models/NAME/model_N.pt: the run's name is its folder's
        name, origin["file"] = path.parent.name, f"{path.parent.name}/{path.name}"
    config = RunConfig(name=name, model=ModelConfig(**model)).to_dict()
    model_config(config)  # the model section's own checks (what drawing needs)
    rec = record(config=config, G=weights, step=0,
                 origin={"kind": found, "tool": TOOLS[found], **origin})
    net = generator_from_state(rec, path).net
    _check_draws(net, model, path)
    return rec


def _check_torch() -> None:
    """PyTorch's weights-only loader had holes before 2.10 (code execution before 2.6): reading
    a stranger's file needs a newer one."""
    import torch

    if torch.torch_version.TorchVersion(torch.__version__) < "2.10":
        raise GantoolError(f"gantool import reads untrusted files with PyTorch's weights-only "
                           f"loader, which is safe from PyTorch 2.10 on; this is "
                           f"{torch.__version__}: pip install 'torch>=2.10'")


def _reader(data: bytes, path: Path):
    """(the kind of generator the file holds, a function that converts it)."""
    from gantool.importers import nvidia
    from gantool.importers.fastgan import fastgan_generator, is_fastgan
    from gantool.importers.lightweight_gan import lightweight_gan_generator
    from gantool.importers.stylegan import stylegan2_generator, stylegan3_generator

    if container(data, path) == "torch":
        saved = load_torch(data, path)
        if is_fastgan(saved):
            return "fastgan", lambda: fastgan_generator(saved)
        return "lightweight-gan", lambda: lightweight_gan_generator(path, saved)
    g = nvidia.generator_of(path, nvidia.read_pickle(path, data))
    synthesis = g.child("synthesis")
    if synthesis is not None and synthesis.child("input") is not None:
        return "stylegan3", lambda: stylegan3_generator(g)
    return "stylegan2", lambda: stylegan2_generator(g)


def load_torch(data: bytes, path):
    """A torch.save file read weights-only: tensors and containers, never code."""
    import io

    import torch

    from gantool.importers.nvidia import Refused, backed

    try:
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - damaged, or holding more than weights
        raise GantoolError(f"{path} is not a readable PyTorch checkpoint of weights "
                           f"({first_line(e, 120)})") from None
    stack = [saved]
    while stack:  # every tensor backed by its own bytes (no zero-stride giants)
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            try:
                backed(item)
            except Refused as e:
                raise GantoolError(f"{path}: refused: it holds {e}") from None
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return saved


def _check_draws(net, model: dict, path) -> None:
    """One image, finite: the weights make a working network."""
    import torch

    from gantool.latent import latents, truncation_input
    from gantool.models import run_generator

    z = torch.from_numpy(latents([0], model["nz"], model["prior"]))
    c = torch.eye(len(model["classes"]))[:1] if model["classes"] else None
    psi = truncation_input(None, model["prior"], 1)
    with torch.no_grad():
        img = run_generator(net, z, c, None if psi is None else torch.from_numpy(psi))
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
    if os.path.lexists(out) and not force:  # a dangling link counts: it names a file
        raise OptionError("out", f"{out} exists; name a new file", see="force")
    rec = convert(src, kind)
    write_checkpoint(rec, out)
    return rec
