"""An export folder changes as a whole: built aside, swapped in, and marked while it is swapped.

``staged(out)`` yields a staging folder inside ``out``; everything an export writes goes there.
Only when the export has finished (verified) are its artifacts moved over the old ones, and
artifacts of an earlier export that this one did not make are removed, so the folder never
mixes two checkpoints. A kill before the swap leaves the old export untouched; a kill during
it leaves ``UNFINISHED`` in the folder, and every reader (``check_finished``) refuses it with
one line until an export runs to the end. Standard library only: backends and ``serve`` read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gantool.errors import GantoolError
from gantool.fileio import UMASK, fsync_dir

ARTIFACTS = ("model.onnx", "model_fp16.onnx", "model.plan", "model.plan.json",
             "model_repository", "export.json")  # export.json last: it describes the rest
UNFINISHED = ".export-unfinished"
_STAGE = ".export-staging-"


def digest(path: Path) -> dict:
    """A file's size and SHA-256, as export.json records them."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def changed_files(folder: Path, names: list[str] | None = None) -> list[str]:
    """Files of an export folder that differ from what export.json recorded (all of them, or
    ``names``), one phrase each; none for an export from before hashes were recorded."""
    summary = folder / "export.json"
    try:
        recorded = json.loads(summary.read_text()).get("hashes", {}) if summary.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return [f"{summary} cannot be read"]
    problems = []
    for name in names or sorted(recorded):
        want, path = recorded.get(name), folder / name
        if want is None:
            continue
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif (path.stat().st_size != want.get("bytes")
              or digest(path)["sha256"] != want.get("sha256")):
            problems.append(f"{path} is not the file gantool export wrote (its size or SHA-256 "
                            "differs from export.json)")
    return problems


def check_unchanged(model: Path) -> None:
    """A one-line error when an exported model file differs from its export's record."""
    problems = changed_files(model.parent, [model.name])
    if problems:
        raise GantoolError(f"{problems[0]}; export it again")


def check_finished(path: str | os.PathLike) -> None:
    """A one-line error when ``path`` (an export folder, or a file or folder in one) belongs
    to an export that was interrupted while it replaced its files."""
    p = Path(path)
    for folder in (p, p.parent):
        if (folder / UNFINISHED).is_file():
            raise GantoolError(f"{folder} holds an interrupted export (its files may come from "
                               "two checkpoints); run gantool export into it again")


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield the folder to write an export into; on success swap it into ``out``."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{_STAGE}*"):  # left by a killed export, unless that one still runs
        if not _alive(old.name.removeprefix(_STAGE).split(".")[0]):
            shutil.rmtree(old, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{_STAGE}{os.getpid()}.", dir=out))
    stage.chmod(0o777 & ~UMASK)
    try:
        yield stage
        _swap(stage, out)
    except OSError as e:
        if e.filename is None:  # a writer that does not say where (onnx, protobuf): the folder
            raise OSError(e.errno, e.strerror, str(out)) from None
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()  # a failed first export leaves no empty folder


def _swap(stage: Path, out: Path) -> None:
    marker = out / UNFINISHED
    marker.write_text("gantool export was replacing the files here; run it again\n")
    fsync_dir(out)
    for name in ARTIFACTS:
        new, target = stage / name, out / name
        if target.is_dir() and not target.is_symlink():
            aside = stage / f"{name}.old"
            target.rename(aside)  # removed with the stage
        elif target.exists() or target.is_symlink():
            target.unlink()
        if new.exists():
            new.rename(target)
    fsync_dir(out)
    marker.unlink()
    fsync_dir(out)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
