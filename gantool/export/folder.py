"""An export folder changes as a whole: built aside, swapped in, and marked while it is swapped.

``staged(out)`` yields a staging folder inside ``out``; everything an export writes goes there.
Only when the export has finished (verified) are its artifacts moved over the old ones, and
artifacts of an earlier export that this one did not make are removed, so the folder never
mixes two checkpoints. A kill before the swap leaves the old export untouched; a kill during
it leaves ``UNFINISHED`` in the folder, and every reader (``gantool.artifacts.check_finished``)
refuses it with one line until an export runs to the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gantool.artifacts import ARTIFACTS, UNFINISHED
from gantool.fileio import UMASK, fsync_dir

_STAGE = ".export-staging-"


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
