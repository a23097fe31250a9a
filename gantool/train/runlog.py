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

    def truncate(self, step: int) -> int:
        """Forget everything written past ``step`` (a resume, a rollback); how many damaged
        lines of metrics.jsonl went with it."""
        if not self.enabled:
            return 0
        bad = truncate_metrics(self.path, step)
        if self.tensorboard:
            self.close()
            self._purge = step + 1  # events at later steps are dropped by TensorBoard's reader
        return bad

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


# what an event row must carry besides its step (the report and TensorBoard read them)
EVENT_FIELDS = {"rollback": {"at_step": int, "reason": str, "lr_scale": (int, float)},
                "stop": {"at_step": int, "reason": str, "lr_scale": (int, float)}}


def read_rows(path: Path) -> tuple[list[tuple[str, dict]], int]:
    """Every usable line of a metrics.jsonl as (its text, its row), and how many were not:
    not UTF-8, not JSON, not an object, no whole-number ``step``, a number field that is not a
    number, a text field that is not text, an event without its fields (a torn last line after
    a crash, or a hand edit).
    The one reader of the file: resume keeps the usable lines, the report draws them."""
    kept, bad = [], 0
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        try:
            line = raw.decode()
            row = json.loads(line)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, nested past the stack
            bad += 1
            continue
        if _usable(row):
            kept.append((line, row))
        else:
            bad += 1
    return kept, bad


TEXT = ("event", "reason")  # a row's fields that are text; all but "sha256" (the replicas'
# fingerprints, read by no one) are numbers


def _usable(row) -> bool:
    if not isinstance(row, dict) or not _number(row.get("step"), int) or row["step"] < 0:
        return False
    if any(not isinstance(v, str) if k in TEXT else not _number(v)
           for k, v in row.items() if k != "sha256"):
        return False
    needs = EVENT_FIELDS.get(row.get("event"), {})
    return all(isinstance(row.get(k), t) for k, t in needs.items()) and row.get("at_step", 0) >= 0


def _number(value, kind: type | tuple = (int, float)) -> bool:
    """A JSON number of ``kind`` that every reader can take as a float: not a bool, not an
    integer past 64 bits."""
    return (isinstance(value, kind) and not isinstance(value, bool)
            and (isinstance(value, float) or abs(value) < 2**63))


def truncate_metrics(path: Path, step: int) -> int:
    """Drop metric rows past ``step`` (written after the checkpoint, before a crash) and the
    lines no reader can use; how many of those were dropped."""
    if not path.exists():
        return 0
    kept, bad = read_rows(path)
    with atomic_write(path) as f:
        f.write("".join(line + "\n" for line, row in kept if row["step"] <= step).encode())
    return bad
