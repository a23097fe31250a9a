"""A run's records: ``metrics.jsonl``, and TensorBoard's event files where asked for.

``RunLog`` is the one writer of both. Only rank 0 of a distributed run writes (``enabled``);
a row is a metrics line (``step``, losses, D outputs, learning rates, batch spread, images/s,
diversity) or an event (``eval``, ``rollback``, ``stop``, ``replicas``). ``truncate(step)``
drops what a run wrote past the state it resumes or rolls back to: rows in ``metrics.jsonl``,
and in TensorBoard by reopening the writer with ``purge_step`` (TensorBoard's own way of
forgetting a restarted run's later events).

TensorBoard (``train.tensorboard``, the ``tensorboard`` extra) gets every numeric field of a row
as a scalar (``loss/d``, ``loss/g``, ``D/real``, ``D/fake``, ``lr/g``, ``lr/d``, ``spread``,
``images_per_s``, ``diversity``, ``eval/fid``, ``eval/kid``, ``guard/rollbacks``), the sample
grids as images, the configuration and each guard event as text, in ``RUN/tensorboard``:
``tensorboard --logdir runs`` shows every run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gantool.errors import GantoolError
from gantool.fileio import atomic_write

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
# metrics.jsonl field -> TensorBoard tag; other numeric fields keep their name
TAGS = {"loss_d": "loss/d", "loss_g": "loss/g", "loss_recon": "loss/recon",
        "d_real": "D/real", "d_fake": "D/fake", "lr_g": "lr/g", "lr_d": "lr/d",
        "rollbacks": "guard/rollbacks", "lr_scale": "guard/lr_scale"}
NOT_SCALARS = ("step", "time", "at_step", "num", "world")


def tensorboard_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line install hint."""
    try:
        import tensorboard  # noqa: F401 - torch's writer needs the package
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise GantoolError("train.tensorboard needs the tensorboard extra: pip install "
                           "'gantool[tensorboard]'") from None
    return SummaryWriter


class RunLog:
    """Appends to ``run_dir/metrics.jsonl`` and, with ``tensorboard``, to its event files."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = False):
        self.path = Path(run_dir) / METRICS
        self.enabled, self.tensorboard = enabled, tensorboard and enabled
        self._writer_class = tensorboard_writer_class() if self.tensorboard else None
        self._tb = None
        self._purge: int | None = None

    def write(self, row: dict) -> None:
        """One row (a dict with ``step``) as a line, and its numbers as scalars."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if not self.tensorboard:
            return
        step, event = int(row["step"]), row.get("event")
        prefix = "eval/" if event == "eval" else ""
        for key, value in row.items():
            if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(
                    value, (int, float)):
                continue
            self._writer().add_scalar(prefix + TAGS.get(key, key), value, step)
        if event in ("rollback", "stop"):
            self._writer().add_text("guard", f"{event} at step {row['at_step']}: "
                                    f"{row['reason']}; back to step {step}, learning rates "
                                    f"x{row['lr_scale']:g}", step)
        self._writer().flush()

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """A uint8 (H, W, C) image (a sample grid) in TensorBoard."""
        if self.tensorboard:
            self._writer().add_image(tag, image, step, dataformats="HWC")
            self._writer().flush()

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.tensorboard:
            self._writer().add_text(tag, text, step)
            self._writer().flush()

    def truncate(self, step: int) -> None:
        """Forget everything written past ``step`` (a resume, a rollback)."""
        if not self.enabled:
            return
        truncate_metrics(self.path, step)
        if self.tensorboard:
            self.close()
            self._purge = step + 1  # events at later steps are dropped by TensorBoard's reader

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _writer(self):
        if self._tb is None:
            self._tb = self._writer_class(str(self.path.parent / TENSORBOARD),
                                          purge_step=self._purge)
            self._purge = None
        return self._tb


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows past ``step`` (written after the checkpoint, before a crash)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and _row_step(line) <= step]
    with atomic_write(path) as f:
        f.write("".join(line + "\n" for line in keep).encode())


def _row_step(line: str) -> float:
    try:
        return json.loads(line).get("step", math.inf)
    except json.JSONDecodeError:
        return math.inf  # a torn last line from a crash
