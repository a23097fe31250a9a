"""FastGAN-pytorch checkpoints (``all_N.pth``: ``{'g', 'd', 'g_ema', 'opt_g', 'opt_d'}``, or
``N.pth`` with ``g`` and ``g_ema``) -> gantool's ``FastGANPytorchGenerator``.

``g`` is the generator's state dict; ``g_ema`` the EMA copy of its parameters as a bare list, in
the order the network registers them, which is the order of the parameters among ``g``'s keys.
The authors draw by loading ``g`` and then the ``g_ema`` parameters over it, so here: the EMA
parameters, with ``g``'s buffers (BatchNorm statistics, spectral normalisation's vectors).
Spectral normalisation is applied once, here, as PyTorch applies it in eval mode.
"""

from __future__ import annotations

import torch

from gantool.importers.stylegan import Unexpected
from gantool.models.fastgan_pytorch import GATES, TWO_CONVS

BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "weight_u", "weight_v")
NOISE_SEED = 0  # the fixed noise maps: torch.Generator seeded so, one per noise layer in order


def is_fastgan(saved) -> bool:
    return (isinstance(saved, dict) and isinstance(saved.get("g"), dict)
            and isinstance(saved.get("g_ema"), (list, tuple)))


def read_checkpoint(saved: dict) -> dict[str, torch.Tensor]:
    """``g``'s state with the EMA parameters in place of its own."""
    if not is_fastgan(saved):
        raise Unexpected("it is not a FastGAN-pytorch checkpoint (a dict with g and g_ema)")
    state = {k.removeprefix("module."): v for k, v in saved["g"].items()}
    names = [k for k in state if not k.endswith(BUFFERS)]
    ema = list(saved["g_ema"])
    if len(ema) != len(names):
        raise Unexpected(f"its g_ema holds {len(ema)} tensors for {len(names)} parameters")
    for name, value in zip(names, ema):
        if not isinstance(value, torch.Tensor) or value.shape != state[name].shape:
            raise Unexpected(f"g_ema's tensor for {name} has another shape")
        state[name] = value
    return state


def _normalised(state: dict, prefix: str, transposed: bool = False) -> torch.Tensor:
    """A spectrally normalised weight as PyTorch computes it in eval mode (stored vectors, no
    power iteration)."""
    try:
        w, u, v = (state[f"{prefix}.weight_{k}"] for k in ("orig", "u", "v"))
    except KeyError:
        raise Unexpected(f"{prefix} is missing or not spectrally normalised") from None
    mat = (w.permute(1, 0, *range(2, w.ndim)) if transposed else w).reshape(
        w.shape[1 if transposed else 0], -1)
    return w / torch.dot(u, torch.mv(mat, v))


def _batchnorm(state: dict, src: str, dst: str, out: dict) -> None:
    for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        if f"{src}.{n}" not in state:
            raise Unexpected(f"{src}.{n} is missing")
        out[f"{dst}.{n}"] = state[f"{src}.{n}"]


def fastgan_generator(saved: dict) -> tuple[dict, dict]:
    """(ModelConfig values, weights) of gantool's FastGANPytorchGenerator for a checkpoint
    (``torch.load``'s dict)."""
    state = read_checkpoint(saved)
    out = {"initial.weight": _normalised(state, "init.init.0", transposed=True)}
    _batchnorm(state, "init.init.1", "initial_norm", out)
    widths = {4: out["initial_norm.weight"].shape[0] // 2}
    resolution, noise = 4, torch.Generator().manual_seed(NOISE_SEED)
    while f"feat_{resolution * 2}.1.weight_orig" in state:
        r = resolution = resolution * 2
        convs = [1, 5] if r in TWO_CONVS else [1]
        for i, k in enumerate(convs):
            out[f"ups.{r}.convs.{i}.weight"] = _normalised(state, f"feat_{r}.{k}")
            _batchnorm(state, f"feat_{r}.{k + 2 if len(convs) == 2 else k + 1}",
                       f"ups.{r}.norms.{i}", out)
            if len(convs) == 2:
                strength = state.get(f"feat_{r}.{k + 1}.weight")
                if not isinstance(strength, torch.Tensor) or strength.shape != (1,):
                    raise Unexpected(f"feat_{r}.{k + 1}.weight (a noise strength) is missing")
                out[f"ups.{r}.noise{i}"] = strength * torch.randn(1, 1, r, r, generator=noise)
        widths[r] = out[f"ups.{r}.norms.0.weight"].shape[0] // 2
        if r in GATES and r <= 512:
            out[f"gates.{r}.conv1.weight"] = _normalised(state, f"se_{r}.main.1")
            out[f"gates.{r}.conv2.weight"] = _normalised(state, f"se_{r}.main.3")
    if resolution not in (256, 512, 1024):
        raise Unexpected(f"it draws {resolution} px; FastGAN-pytorch draws 256, 512 or 1024")
    out["to_image.weight"] = _normalised(state, "to_big")
    channels, width = out["to_image.weight"].shape[:2]
    if width != widths[resolution] or channels not in (1, 3):
        raise Unexpected(f"its output layer maps {width} channels to {channels}")
    model = {"arch": "fastgan-pytorch", "resolution": resolution, "channels": channels,
             "nz": out["initial.weight"].shape[0], "classes": [], "prior": "normal",
             "arch_params": {"widths": {str(r): c for r, c in widths.items()}}}
    return model, out
