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

from gantool.errors import GantoolError, first_line


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


class Refused(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list."""


def _storage(data: bytes):
    """A tensor storage as the pickle carries it (``torch.save`` bytes), read weights-only
    (``torch.storage._load_from_bytes`` would read it with pickle's full powers)."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise Refused("a tensor storage holding more than tensor data") from None


def backed(t: torch.Tensor) -> torch.Tensor:
    """``t`` if its storage holds every element it addresses: a view with zero strides over a
    few bytes could otherwise stand for terabytes once copied."""
    if t.numel() * t.element_size() > t.untyped_storage().nbytes():
        raise Refused(f"a tensor of shape {list(t.shape)} over {t.untyped_storage().nbytes()} "
                      "bytes")
    return t


def _tensor(*args):
    return backed(torch._utils._rebuild_tensor_v2(*args))


# numpy values are rebuilt from plain bytes of plain number types only: numpy's own rebuilders,
# driven by a crafted pickle, can forge object pointers (a dtype whose object field its flags
# deny) or address memory they do not own.
PLAIN_KINDS = "biufc"


class _DType:
    def __init__(self, name, align=False, copy=False):
        try:
            dtype = np.dtype(str(name)[:16])
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in PLAIN_KINDS or dtype.fields or dtype.subdtype:
            raise Refused(f"numpy dtype {str(name)[:16]!r} (only plain numbers are read)")
        self.dtype = dtype

    def __setstate__(self, state):  # (version, byte order, subarray, names, fields, ...)
        if not (isinstance(state, tuple) and len(state) >= 5 and state[2:5] == (None,) * 3
                and state[1] in ("<", ">", "|", "=")):
            raise Refused("a numpy dtype with fields or sub-arrays")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _ArrayClass:
    """What a pickled array names as its class (numpy.ndarray): not callable here."""


ARRAY_CLASS = _ArrayClass()


def _plain_array(raw, dtype, shape, order: str = "C") -> np.ndarray:
    if not (isinstance(dtype, _DType) and isinstance(raw, (bytes, bytearray))
            and isinstance(shape, tuple) and len(shape) <= 8
            and all(isinstance(n, int) and n >= 0 for n in shape)
            and int(np.prod(shape, dtype=np.int64)) * dtype.dtype.itemsize == len(raw)):
        raise Refused("a numpy array that is not plain numbers of its stated size")
    return np.frombuffer(bytes(raw), dtype.dtype).reshape(shape, order=order).copy()


class _Array:
    """An array as ``numpy.core.multiarray._reconstruct`` and ``__setstate__`` rebuild it."""

    def __init__(self, cls, shape=(0,), dtypechar=b"b"):
        if cls is not ARRAY_CLASS:
            raise Refused("an array of a class other than numpy.ndarray")
        self.value = None

    def __setstate__(self, state):  # (version, shape, dtype, is_fortran, raw bytes)
        if not (isinstance(state, tuple) and len(state) == 5):
            raise Refused("a numpy array state of another form")
        _, shape, dtype, fortran, raw = state
        self.value = _plain_array(raw, dtype, tuple(shape) if isinstance(shape, (tuple, list))
                                  else shape, "F" if fortran else "C")


def _scalar(dtype, data=None):
    return _plain_array(data, dtype, ())[()]


def _frombuffer(buffer, dtype, shape, order="C"):  # numpy's pickle protocol 5 form
    return _plain_array(buffer, dtype, tuple(shape), order)


def unwrap(obj, seen: set | None = None):
    """The loaded object with every rebuilt array and dtype as numpy's own (in place where
    the containers allow)."""
    seen = set() if seen is None else seen
    if isinstance(obj, _Array):
        return obj.value
    if isinstance(obj, _DType):
        return obj.dtype
    if id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, Persistent):
        unwrap(obj.state, seen)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = unwrap(value, seen)
    elif isinstance(obj, list):
        obj[:] = [unwrap(v, seen) for v in obj]
    elif isinstance(obj, tuple):
        return tuple(unwrap(v, seen) for v in obj)
    return obj


ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage,
    ("numpy", "dtype"): _DType,
    ("numpy", "ndarray"): ARRAY_CLASS,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
}
for _core in ("numpy.core", "numpy._core"):  # numpy 2 moved numpy.core; pickles name either
    ALLOWED[(f"{_core}.multiarray", "scalar")] = _scalar
    ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _Array
    ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _frombuffer


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
        return unwrap(RestrictedUnpickler(io.BytesIO(data)).load())
    except Refused as e:
        raise GantoolError(f"{path}: refused: the pickle asks for {e}; gantool reads only the "
                           "plain weights of NVIDIA StyleGAN2/3 network pickles and runs nothing "
                           "in them") from None
    except RecursionError:
        raise GantoolError(f"{path}: the pickle nests too deeply to be a network pickle") from None
    except Exception as e:  # noqa: BLE001 - truncated, corrupt, or not a pickle at all
        raise GantoolError(f"{path} is not a readable network pickle ({first_line(e, 120)}); "
                           "it may be truncated or damaged: download it again") from None


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
