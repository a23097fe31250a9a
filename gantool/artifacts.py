"""An export folder: the one home of its file names and of ``export.json``, as ``gantool
export`` writes them and every reader checks them: finished (no marker of an interrupted swap)
and unchanged (each file as ``export.json`` hashed it). Standard library only: the backends,
``info`` and ``serve`` read exports without importing the export code (``gantool.export``
writes them through ``write_record`` here; ``gantool.export.folder`` swaps them in).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from gantool.errors import GantoolError, OptionError, literal
from gantool.fileio import COUNT, atomic_write, read_record

# the files of an export folder
ONNX = "model.onnx"  # float32, dynamic batch
ONNX_FP16 = "model_fp16.onnx"  # with fp16
PLAN = "model.plan"  # the TensorRT plan (bare), and its sidecar: the model's metadata, profile
PLAN_SIDECAR = "model.plan.json"
REPOSITORY = "model_repository"  # the Triton model repository (a folder)
RECORD = "export.json"  # what the export wrote: files, their hashes, the model's metadata
# every file an export may leave in its folder, in the order a finished export swaps them in:
# export.json last, as it describes the rest
ARTIFACTS = (ONNX, ONNX_FP16, PLAN, PLAN_SIDECAR, REPOSITORY, RECORD)
UNFINISHED = ".export-unfinished"  # in an export folder while its files are being replaced
# what readers take from export.json (an export from before hashes were recorded has none)
RECORD_SCHEMA = {"hashes?": {"*": {"bytes": COUNT, "sha256": str}}, "metadata?": {"*": str}}


def onnx_name(fp16: bool = False) -> str:
    """The ONNX model of an export folder: float32, or the FP16 one."""
    return ONNX_FP16 if fp16 else ONNX


def plan_sidecar(plan: Path) -> Path:
    """The JSON sidecar beside a TensorRT plan (``model.plan`` -> ``model.plan.json``)."""
    return plan.with_suffix(".plan.json")


def digest(path: Path) -> dict:
    """A file's size and SHA-256, as export.json records them."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def write_record(folder: Path, files: list[Path], fields: dict) -> Path:
    """``folder/export.json``, atomically: ``files`` by name with the size and SHA-256 of each
    (a folder, the Triton repository, by name only), then ``fields``."""
    path = folder / RECORD
    text = json.dumps({
        "files": [p.name for p in files],
        "hashes": {p.name: digest(p) for p in files if p.is_file()},
        **fields,
    }, indent=2) + "\n"
    with atomic_write(path) as f:
        f.write(text.encode())
    return path


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
                            f"differs from {RECORD})")
    return problems


def verify_export(folder: Path) -> list[str]:
    """Every file of an export folder against the size and SHA-256 its export.json recorded
    (the ``verify`` option of ``gantool info``): the names checked, or a one-line error naming
    the first that differs (an unfinished export, a folder without export.json, and one that
    records no hashes are errors too)."""
    if not (folder / RECORD).is_file():
        raise OptionError(None, f"{{verify}} checks an export folder; {literal(folder)} has no "
                          f"{RECORD}")
    check_finished(folder)
    recorded = export_record(folder).get("hashes", {})
    problems = changed_files(folder)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GantoolError(problems[0] + more)
    if not recorded:
        raise GantoolError(f"{folder}/{RECORD} records no hashes (an export from an older "
                           "gantool); export again to be able to verify it")
    return sorted(recorded)


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
