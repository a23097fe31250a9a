"""NVIDIA StyleGAN2-ADA / StyleGAN3 network pickles, read without running them.

Their training loop pickles a dict (``G``, ``D``, ``G_ema``, ``augment_pipe``,
``training_set_kwargs``) whose networks are objects of ``torch_utils.persistence``: each one
pickles as a call of ``_reconstruct_persistent_obj(meta)``, where ``meta`` holds the class name,
the object's state (its ``__dict__``: tensors, sub-modules, hyper-parameters) and the whole
source of the module that defined it, which NVIDIA's loader executes. Here that call only keeps
the class name and the state; the source is never looked at. Every other global the pickle asks
for must be on a short allow-list (containers, numpy scalars and arrays, torch's tensor
rebuilders), and tensor storages are read with ``torch.load(weights_only=True)``; anything else
is refused, so loading a stranger's pickle runs none of their code.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gantool.errors import GantoolError


@dataclass
class Persistent:
    """What a persistent object of the pickle leaves behind: its class name and state."""

    class_name: str
    state: dict = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.state[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    def child(self, name: str) -> Persistent | None:
        """The sub-module ``name`` (None when absent)."""
        return (self.state.get("_modules") or {}).get(name)

    def tensor(self, name: str) -> torch.Tensor | None:
        """The parameter or buffer ``name`` (None when absent), as float32."""
        for table in ("_parameters", "_buffers"):
            t = (self.state.get(table) or {}).get(name)
            if t is not None:
                return t.detach().float()
        return None


def _persistent(meta: dict) -> Persistent:
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("a persistent object without a state")
    return Persistent(str(meta.get("class_name")), meta["state"])


def _storage(data: bytes):
    """A tensor storage as the pickle carries it (``torch.save`` bytes), read weights-only
    (``torch.storage._load_from_bytes`` would read it with pickle's full powers)."""
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except pickle.UnpicklingError:
        raise Refused("a tensor storage holding more than tensor data") from None


def _dtype(*args):
    return np.dtype(*args)


ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage,
    ("numpy", "dtype"): _dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
}
try:  # numpy 2 moved numpy.core to numpy._core; pickles name either
    from numpy._core import multiarray as _multiarray
except ImportError:
    from numpy.core import multiarray as _multiarray
for _core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED[(_core, "scalar")] = _multiarray.scalar
    ALLOWED[(_core, "_reconstruct")] = _multiarray._reconstruct


class Refused(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise Refused(f"persistent id {str(pid)[:40]!r}")


def read_pickle(path, data: bytes) -> Any:
    """The object a network pickle holds, with ``Persistent`` in place of NVIDIA's networks; a
    one-line error for a damaged file or one that asks for anything off the allow-list."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except Refused as e:
        raise GantoolError(f"{path}: refused: the pickle asks for {e}, which gantool does not "
                           "load (it could run code); only NVIDIA StyleGAN2/3 network pickles "
                           "are read") from None
    except RecursionError:
        raise GantoolError(f"{path}: the pickle nests too deeply to be a network pickle") from None
    except Exception as e:  # noqa: BLE001 - truncated, corrupt, or not a pickle at all
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GantoolError(f"{path} is not a readable network pickle ({why[:120]}); it may be "
                           "truncated or damaged: download it again") from None


def generator_of(path, obj: Any) -> Persistent:
    """The EMA generator of an NVIDIA pickle's dict; a one-line error naming what it holds
    instead."""
    if not isinstance(obj, dict):
        raise GantoolError(f"{path} holds a {type(obj).__name__}, not an NVIDIA network "
                           "pickle (a dict with G_ema)")
    g = obj.get("G_ema", obj.get("G"))
    if g is None:
        held = ", ".join(sorted(map(str, obj))[:8]) or "nothing"
        what = "only a discriminator" if "D" in obj else f"no generator ({held})"
        raise GantoolError(f"{path} holds {what}: gantool imports a pickle with G_ema, as "
                           "NVIDIA's training writes (network-snapshot-*.pkl)")
    if not isinstance(g, Persistent):
        raise GantoolError(f"{path}: its G_ema is a {type(g).__name__}, not an NVIDIA "
                           "network")
    return g
