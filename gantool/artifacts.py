"""An export folder as its readers check it: finished (no marker of an interrupted swap) and
unchanged (each file as ``export.json`` hashed it). Standard library only: the backends, ``info``
and ``serve`` read exports without importing the export code (``gantool.export.folder`` writes
them).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gantool.errors import GantoolError
from gantool.fileio import COUNT, read_record

UNFINISHED = ".export-unfinished"  # in an export folder while its files are being replaced
RECORD = "export.json"
# what readers take from export.json (an export from before hashes were recorded has none)
RECORD_SCHEMA = {"hashes?": {"*": {"bytes": COUNT, "sha256": str}}, "metadata?": {"*": str}}


def digest(path: Path) -> dict:
    """A file's size and SHA-256, as export.json records them."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def export_record(folder: Path, need: tuple[str, ...] = (), hint: str = "") -> dict:
    """``folder/export.json`` with the keys its readers use checked (``need``: those that must
    be there), {} where the folder has none (a bare model file); a one-line GantoolError naming
    the file and the key otherwise, ``hint`` at its end."""
    path = folder / RECORD
    if not path.is_file() and not need:
        return {}
    schema = {(k[:-1] if k[:-1] in need else k): v for k, v in RECORD_SCHEMA.items()}
    record = read_record(path, schema, hint)
    odd = next((n for n in record.get("hashes", {}) if Path(n).name != n or n in ("", ".", "..")),
               None)
    if odd is not None:
        raise GantoolError(f"{path}: key hashes names {odd!r}, not a file of {folder}"
                           + (f"; {hint}" if hint else ""))
    return record


def changed_files(folder: Path, names: list[str] | None = None) -> list[str]:
    """Files of an export folder that differ from what export.json recorded (all of them, or
    ``names``), one phrase each; none for an export from before hashes were recorded."""
    try:
        recorded = export_record(folder).get("hashes", {})
    except GantoolError as e:
        return [str(e)]
    problems = []
    for name in names or sorted(recorded):
        want, path = recorded.get(name), folder / name
        if want is None:
            continue
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif (path.stat().st_size != want["bytes"]
              or digest(path)["sha256"] != want["sha256"]):
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
