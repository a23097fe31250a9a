"""An export folder as its readers check it: finished (no marker of an interrupted swap) and
unchanged (each file as ``export.json`` hashed it). Standard library only: the backends, ``info``
and ``serve`` read exports without importing the export code (``gantool.export.folder`` writes
them).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gantool.errors import GantoolError

UNFINISHED = ".export-unfinished"  # in an export folder while its files are being replaced


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
