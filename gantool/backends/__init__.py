"""One Generator protocol for every backend: seeds + truncation (or z itself) in, uint8 images
out. ``open_backend``/``load_backend`` open a model with the backend named, ``open_triton`` a
running Triton server (``triton_backend``), ``open_source`` either (a command's MODEL or its
URL); the protocol and what the backends share are in ``base``."""

from __future__ import annotations

from pathlib import Path

from gantool.backends.base import (  # noqa: F401 - the backends' public names
    PRECISIONS,
    ExportedGenerator,
    FixedClass,
    Generator,
    check_class_input,
    class_indices,
    class_input,
    model_prior,
)
from gantool.errors import GantoolError, OptionError

BACKENDS = ("torch", "onnx", "trt")
# Every backend option and its default, and the options each backend takes: an option left at
# its default is not asked for; one asked of a backend that does not take it is a one-line
# error, in one place (``load_backend``), whoever calls it.
OPTION_DEFAULTS = {"device": "auto", "prior": None, "ema": True, "precision": "fp32",
                   "compile": False, "cuda_graphs": False, "fp16": False, "threads": 0}
OPTIONS = {"torch": ("device", "prior", "ema", "precision", "compile", "cuda_graphs"),
           "onnx": ("device", "prior", "fp16", "threads"),
           "trt": ("prior",)}


def open_backend(model: Path, backend: str, device: str = "auto", ema: bool = True,
                 prior: str | None = None, fp16: bool = False, precision: str = "fp32",
                 compile: bool = False, cuda_graphs: bool = False) -> Generator:
    """The backend named ``backend`` on the file or folder ``model``: one-line errors for a
    missing path, or an option that backend does not take (``OPTIONS``), before it is opened."""
    options = check_options(backend, {
        "device": device, "ema": ema, "prior": prior, "fp16": fp16, "precision": precision,
        "compile": compile, "cuda_graphs": cuda_graphs})
    if not model.exists():
        raise GantoolError(f"{model} does not exist")
    if backend == "torch" and not model.is_file():
        raise GantoolError(f"{model} is a folder; the torch backend takes a checkpoint file")
    return load_backend(backend, str(model), **options)


def check_source(model: Path | None, url: str | None) -> None:
    """A one-line error unless exactly one of a ``model`` (file or folder) and a Triton server's
    ``url`` is given: what ``open_source`` draws from."""
    if (model is None) == (url is None):
        raise OptionError(None, "pass a MODEL, or {url} of a Triton server (not both)")


def open_source(model: Path | None, url: str | None = None, protocol: str = "grpc",
                backend: str = "torch", **options) -> Generator:
    """What a drawing command draws with: the file or folder ``model`` through ``backend``
    (``open_backend``, which takes ``options``), or the Triton server at ``url`` over
    ``protocol`` (``open_triton``: the server's repository fixed its backend, so ``backend``
    and ``options`` are not used); exactly one of ``model`` and ``url``."""
    check_source(model, url)
    if url is not None:
        return open_triton(url, protocol)
    return open_backend(model, backend, **options)


def open_triton(url: str, protocol: str = "grpc", **options) -> Generator:
    """The ``render`` ensemble of the Triton server (``gantool serve``) at ``url`` (HOST:PORT of
    its ``protocol`` port, grpc or http); ``options``: ``TritonGenerator``'s (request_batch,
    concurrency, timeout, retries, shared_memory, ...)."""
    from gantool.backends.triton_backend import TritonGenerator

    return TritonGenerator(url, protocol, **options)


def load_backend(name: str, path: str, **options) -> Generator:
    """Open ``path`` with the backend called ``name``; ``options`` as in ``OPTIONS``."""
    options = check_options(name, options)
    if name == "torch":
        from gantool.backends.torch_backend import TorchGenerator

        return TorchGenerator(path, **options)
    if name == "onnx":
        from gantool.backends.onnx_backend import OnnxGenerator

        return OnnxGenerator(path, **options)
    if name == "trt":
        from gantool.backends.trt_backend import TensorRTGenerator

        return TensorRTGenerator(path, **options)
    raise GantoolError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")


def check_options(name: str, options: dict) -> dict:
    """The ``options`` asked for (those not at their defaults); a one-line error for one that
    backend ``name`` does not take, naming the backend that does."""
    if name not in OPTIONS:
        raise GantoolError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    asked = {k: v for k, v in options.items() if v != OPTION_DEFAULTS.get(k, object())}
    for key in asked:
        if key not in OPTIONS[name]:
            owners = [b for b in BACKENDS if key in OPTIONS[b]]
            raise OptionError(key, f"only the {' and '.join(owners)} backend takes it, not "
                              f"{name}", see="backend")
    return asked
