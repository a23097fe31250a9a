"""Device choice shared by training and inference."""

from __future__ import annotations

import os

import torch

from gantool.errors import GantoolError, OptionError, literal


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available (under torchrun, this process's GPU, LOCAL_RANK), else
    cpu; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local = os.environ.get("LOCAL_RANK", "")
        if local.isdigit():
            return torch.device("cuda", int(local) % torch.cuda.device_count())
        return torch.device("cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(None, f"device {literal(name)} was asked for but no CUDA GPU is "
                          "visible; use {device} cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GantoolError(f"unknown device {name!r}; use auto, cpu or cuda") from None
