"""Does an exported model draw the same images as PyTorch? Numbers and thresholds.

Thresholds per precision (checked on the verification seeds, uint8 images compared with
PyTorch float32's, rounded the same way):

- float32: float output max |error| <= 1e-4; uint8 output: every byte within 1 of PyTorch's
  (an exact tie can round either way after a 1e-7 difference) and PSNR >= 60 dB;
- float16: PSNR >= 40 dB, no non-finite value, and no value of the float32 graph past fp16's
  range (see ``gantool.export.fp16``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

THRESHOLDS = {
    "fp32": {"max_abs": 1e-4, "max_byte_diff": 1, "psnr_db": 60.0},
    "fp16": {"psnr_db": 40.0},
}


@dataclass(frozen=True)
class Check:
    """One artifact against PyTorch on the same seeds."""

    artifact: str
    precision: str
    images: int
    max_abs: float | None  # float outputs only
    max_byte_diff: int
    psnr_db: float  # of the uint8 images; inf when identical
    nonfinite: int
    saturated: int  # bytes at 0 or 255 here but not in PyTorch's image
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        err = f"max |err| {self.max_abs:.2e}, " if self.max_abs is not None else ""
        psnr = "identical" if math.isinf(self.psnr_db) else f"PSNR {self.psnr_db:.1f} dB"
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return (f"{self.artifact} ({self.precision}, {self.images} images): {err}{psnr}, "
                f"max byte diff {self.max_byte_diff}, non-finite {self.nonfinite}, "
                f"saturated {self.saturated}: {verdict}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def compare(artifact: str, precision: str, reference: np.ndarray, output: np.ndarray) -> Check:
    """``reference``: PyTorch float32 (B, C, H, W) in [-1, 1]; ``output``: the artifact's
    float (B, C, H, W) or uint8 (B, H, W, C) output for the same z."""
    from gantool.sampling.images import to_uint8

    limits = THRESHOLDS[precision]
    ref_bytes = to_uint8(reference)
    if output.dtype == np.uint8:
        max_abs, nonfinite, got = None, 0, output
    else:
        nonfinite = int((~np.isfinite(output)).sum())
        max_abs = float(np.nanmax(np.abs(output.astype(np.float64) - reference)))
        got = to_uint8(np.nan_to_num(output))
    diff = int(np.abs(got.astype(np.int16) - ref_bytes.astype(np.int16)).max())
    edge = (got == 0) | (got == 255)
    saturated = int((edge & ~((ref_bytes == 0) | (ref_bytes == 255))).sum())
    db = psnr(got, ref_bytes)
    problems = []
    if nonfinite:
        problems.append(f"{nonfinite} non-finite values")
    if "max_abs" in limits and max_abs is not None and max_abs > limits["max_abs"]:
        problems.append(f"max |err| {max_abs:.2e} > {limits['max_abs']:g}")
    if "max_byte_diff" in limits and diff > limits["max_byte_diff"]:
        problems.append(f"a byte differs by {diff} > {limits['max_byte_diff']}")
    if db < limits["psnr_db"]:
        problems.append(f"PSNR {db:.1f} dB < {limits['psnr_db']:g} dB")
    return Check(artifact, precision, len(reference), max_abs, diff, db, nonfinite, saturated,
                 tuple(problems))
