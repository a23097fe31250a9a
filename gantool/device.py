"""Device choice shared by training and inference."""

from __future__ import annotations

import torch

from gantool.errors import GantoolError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GantoolError(f"device {name} was asked for but no CUDA GPU is visible; "
                           "use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GantoolError(f"unknown device {name!r}; use auto, cpu or cuda") from None
