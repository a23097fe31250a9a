"""Shards of a render: which block of the seed list this process draws, where it writes it, and
the merge that checks a set of shard outputs and writes one index.

Shard I of N is block I of N near-equal contiguous blocks of the seed list (``Seeds.part``):
the blocks are disjoint, cover the list, and depend on the list and N alone, so any machine
computes the same one. Each shard writes into its own sub-folder ``OUT/shard-IIIII-of-NNNNN``
(holding ``shard.json``, which names the list and the shard, its images and its own
manifest), so shards never share a folder lock or a manifest and each resumes on its own.
``merge`` reads them all and writes ``OUT/manifest.jsonl``: every seed of the list once, in
list order, with its file's path under ``OUT``.

The index comes from ``--shard I/N`` or, when that is not given, from the job's environment:
torchrun (``RANK``/``WORLD_SIZE``), a Slurm array (``SLURM_ARRAY_TASK_ID`` less
``SLURM_ARRAY_TASK_MIN``, over ``SLURM_ARRAY_TASK_STEP``, of ``SLURM_ARRAY_TASK_COUNT``) or a
Kubernetes Indexed Job (``JOB_COMPLETION_INDEX``, with the count in ``GANTOOL_SHARDS``: Kubernetes
puts the index in the environment but not the completion count).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gantool.errors import GantoolError, OptionError, literal
from gantool.fileio import atomic_write, claim_folder, read_record
from gantool.latent import Seeds, parse_seeds
from gantool.sampling.pipeline import manifest_rows, say_settings
from gantool.sampling.tars import tar_members
from gantool.sampling.writer import MANIFEST

SHARD_FILE = "shard.json"
FOLDER = re.compile(r"shard-(\d{5})-of-(\d{5})")
SETTINGS_IGNORED = ("seed", "file", "member", "backend")  # differ between rows of one render


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    source: str  # what named it: "--shard" or the environment variable

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def folder(self, out: Path) -> Path:
        """Where this shard writes under ``out`` (``out`` itself for the one shard of one)."""
        return out if self.count == 1 else out / f"shard-{self.index:05d}-of-{self.count:05d}"

    def claim(self, out: Path, seeds: Seeds) -> tuple[Seeds, Path]:
        """This shard's seeds and folder; records the list and the shard in the folder (a folder
        that holds another list's or another shard's images is a one-line error)."""
        folder = self.folder(out)
        if self.count == 1:
            return seeds, folder
        before = claim_folder(folder / SHARD_FILE, {"seeds": str(seeds), "shard": str(self)})
        if before == {}:
            raise GantoolError(f"{folder / SHARD_FILE} is damaged; render this shard into a "
                               "fresh folder")
        if before is not None:
            raise OptionError(None, f"{literal(folder)} holds shard "
                              f"{literal(before.get('shard'))} of seeds "
                              f"{literal(before.get('seeds'))}; render other seeds or shard "
                              "counts into another {out}")
        return seeds.part(self.index, self.count), folder


def parse_shard(text: str, source: str = "shard") -> Shard:
    """``I/N`` (0 <= I < N) as a Shard, or a ValueError saying what is wrong."""
    if not str(text).isascii():  # int() reads other scripts' digits; every other number refuses
        raise ValueError(f"{source} {text!r} is not I/N in digits 0-9 (e.g. 3/8)")
    index, sep, count = str(text).strip().partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"{source} {text!r} is not I/N (e.g. 3/8: the fourth of eight "
                         "shards)") from None
    if not (sep and n >= 1 and 0 <= i < n):
        raise ValueError(f"{source} {text!r}: the index must be in 0..N-1 and N at least 1, "
                         "e.g. 3/8")
    return Shard(i, n, source)


def shard_from(flag: str | None, environ: Mapping[str, str] = os.environ,
               name: str = "shard") -> Shard | None:
    """The shard of this process: ``flag`` (``I/N``, the option called ``name``) if given, else
    the first job environment that names one, else None (the whole list). A ValueError names
    the source that is wrong,
    or the variable a job's environment lacks (with only its index, every process of the job
    would draw every seed)."""
    if flag is not None:
        return parse_shard(flag, name)
    for index, count, job in (("RANK", "WORLD_SIZE", "torchrun sets both"),
                              ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                               "a Slurm array sets both"),
                              ("JOB_COMPLETION_INDEX", "GANTOOL_SHARDS", "a Kubernetes Indexed "
                               "Job sets the index; deploy/k8s/render-job.yaml the count")):
        if (index in environ) != (count in environ):
            have, lack = (index, count) if index in environ else (count, index)
            raise ValueError(f"{have} is set but {lack} is not ({job}): every process would "
                             f"draw every seed; set {lack} too, or unset {have}")
        if index in environ:
            break  # the first job that names a shard names it
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return parse_shard(f"{environ['RANK']}/{environ['WORLD_SIZE']}", "RANK/WORLD_SIZE")
    if "SLURM_ARRAY_TASK_ID" in environ and "SLURM_ARRAY_TASK_COUNT" in environ:
        try:
            task, low = int(environ["SLURM_ARRAY_TASK_ID"]), int(
                environ.get("SLURM_ARRAY_TASK_MIN", 0))
            step = int(environ.get("SLURM_ARRAY_TASK_STEP", 1))
        except ValueError:
            raise ValueError("SLURM_ARRAY_TASK_ID/MIN/STEP are not integers") from None
        return parse_shard(f"{(task - low) // max(step, 1)}/{environ['SLURM_ARRAY_TASK_COUNT']}",
                           "SLURM_ARRAY_TASK_ID")
    if "JOB_COMPLETION_INDEX" in environ and "GANTOOL_SHARDS" in environ:
        return parse_shard(f"{environ['JOB_COMPLETION_INDEX']}/{environ['GANTOOL_SHARDS']}",
                           "JOB_COMPLETION_INDEX/GANTOOL_SHARDS")
    return None


# ---- merge -------------------------------------------------------------------------------
def finish(out: Path) -> dict:
    """The index of a render of the shards of one list under ``out``: their ``merge`` or,
    where the one shard of one drew into ``out`` itself (one device), its own manifests
    (``out``'s, or one per class folder), counted. Returns what ``merge`` does."""
    if any(FOLDER.fullmatch(p.name) for p in out.iterdir()):
        return merge(out)
    own = [out / MANIFEST] if (out / MANIFEST).is_file() else sorted(
        out.glob(f"class[0-9]*/{MANIFEST}"))
    images = sum(1 for path in own for _ in manifest_rows(path))
    return {"shards": 1, "images": images, "index": own[0] if len(own) == 1 else out}


def merge(out: Path) -> dict:
    """Check the shard folders under ``out`` and write ``out/manifest.jsonl`` listing every
    seed of their list once (per class, for a render of several), in list order, each file's
    path relative to ``out``.
    A one-line error names the first problem: a missing shard, a shard of another list or
    count, a seed missing from a shard or listed twice, images rendered with other settings.
    Returns ``shards``, ``images`` and the ``index`` written."""
    shards = _shard_folders(out)
    _check_not_a_render(out)
    count, seeds = shards[0][1]["count"], shards[0][1]["seeds"]
    missing = sorted(set(range(count)) - {s["index"] for _, s in shards})
    if missing:
        listed = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise OptionError(None, f"{literal(out)}: shard(s) {listed} of {count} are missing; "
                          f"render them ({{shard}} I/{count}) and merge again")
    seed_list = parse_seeds(seeds) if seeds else Seeds([])
    parts = [seed_list.part(shard["index"], count) for _, shard in shards]
    drawn = [(f, s, part) for (f, s), part in zip(shards, parts) if len(part)]  # none: valid
    images = 0
    with atomic_write(out / MANIFEST) as f:
        for sub in _subfolders(drawn):
            settings: dict | None = None
            for folder, shard, part in drawn:
                rows, listed = _rows(folder / sub), set()
                for seed in part:
                    if seed in listed:
                        continue  # a seed the list names twice is drawn once
                    row = rows.pop(seed, None)
                    if row is None:
                        raise GantoolError(
                            f"{folder / sub}: seed {seed} is not rendered (shard "
                            f"{shard['index']}/{count}); run that shard again, then merge")
                    now = {k: v for k, v in row.items() if k not in SETTINGS_IGNORED}
                    if settings is not None and now != settings:
                        differ = [k for k in {**settings, **now} if now.get(k) != settings.get(k)]
                        raise GantoolError(f"{folder / sub}: seed {seed} was rendered with "
                                           f"{say_settings(now, differ)}, other shards with "
                                           f"{say_settings(settings, differ)}: one render's "
                                           "shards only")
                    settings = now
                    row["file"] = (folder / sub / row["file"]).relative_to(out).as_posix()
                    f.write((json.dumps(row) + "\n").encode())
                    listed.add(seed)
                    images += 1
                if rows:
                    raise GantoolError(f"{folder / sub}: seed {min(rows)} is not in shard "
                                       f"{shard['index']}/{count} of seeds {seeds}; a folder of "
                                       "another render is among the shards")
    return {"shards": len(shards), "images": images, "index": out / MANIFEST}


def _shard_folders(out: Path) -> list[tuple[Path, dict]]:
    """(folder, record) of every shard under ``out``, by index; one list and count, each index
    once."""
    if not out.is_dir():
        raise GantoolError(f"{out} is not a folder")
    found = []
    for folder in sorted(p for p in out.iterdir() if FOLDER.fullmatch(p.name) and p.is_dir()):
        again = "render that shard again into a fresh folder"
        record = read_record(folder / SHARD_FILE, {"shard": str, "seeds": str}, again)
        try:
            shard = parse_shard(record["shard"])
            parse_seeds(record["seeds"]) if record["seeds"] else None
        except ValueError:
            raise GantoolError(f"{folder / SHARD_FILE} is damaged; {again}") from None
        if shard.folder(out) != folder:
            raise GantoolError(f"{folder} holds shard {shard} (a copy under another name?); "
                               "keep each shard in the folder it was rendered into")
        found.append((folder, {"index": shard.index, "count": shard.count,
                               "seeds": record["seeds"]}))
    if not found:
        raise OptionError(None, f"{literal(out)} holds no shard folders (shard-IIIII-of-NNNNN); "
                          "render with {shard} I/N into it first")
    first = found[0][1]
    for folder, shard in found:
        if (shard["count"], shard["seeds"]) != (first["count"], first["seeds"]):
            raise GantoolError(
                f"{folder} is a shard of {shard['count']} of seeds {shard['seeds']}, "
                f"{found[0][0].name} of {first['count']} of seeds {first['seeds']}: one render's "
                "shards only")
    return found


def _check_not_a_render(out: Path) -> None:
    """``out/manifest.jsonl`` is replaced only when it is a merged index (its files are in shard
    folders), never when it lists images that a render wrote into ``out`` itself."""
    first = next(manifest_rows(out / MANIFEST), None)
    if first is not None and not FOLDER.fullmatch(str(first.get("file", "")).split("/")[0]):
        raise GantoolError(f"{out / MANIFEST} lists images rendered into {out} itself; keep "
                           "shards under a folder of their own")


def _subfolders(shards: list[tuple[Path, dict, Seeds]]) -> list[str]:
    """The folders each shard that draws seeds holds a manifest in: ``.``, or one per class
    (classNNN), the same in every shard."""
    def of(folder: Path) -> list[str]:
        if (folder / MANIFEST).is_file():
            return ["."]
        return sorted(p.parent.name for p in folder.glob(f"class[0-9]*/{MANIFEST}"))

    if not shards:
        return []
    first = of(shards[0][0])
    for folder, _, _ in shards:
        if of(folder) != first:
            raise GantoolError(f"{folder} holds {of(folder) or 'no images'} where "
                               f"{shards[0][0].name} holds {first}; finish that shard first")
    return first


def _rows(folder: Path) -> dict[int, dict]:
    """The manifest rows of ``folder`` by seed, each naming a file that is there, inside the
    folder (and a tar member that the tar holds whole)."""
    rows: dict[int, dict] = {}
    members: dict[str, set[str]] = {}  # a tar's members, read once per tar
    for row in manifest_rows(folder / MANIFEST):
        seed = row.get("seed")
        if type(seed) is not int or not isinstance(row.get("file"), str):
            continue  # not a row of an image (a damaged line)
        _check_listed(folder, seed, row, members)
        if seed in rows and rows[seed] != row:
            raise GantoolError(f"{folder}: seed {seed} is listed twice, differently")
        rows[seed] = row
    return rows


def _check_listed(folder: Path, seed: int, row: dict, members: dict[str, set[str]]) -> None:
    """A one-line error unless ``row``'s file is in ``folder`` (no ``..``, no absolute path,
    no link out of it) and on disk, and its tar member, where it names one, is in the tar."""
    name, path = row["file"], folder / row["file"]
    if (Path(name).is_absolute() or ".." in Path(name).parts
            or not path.resolve().is_relative_to(folder.resolve())):
        raise GantoolError(f"{folder / MANIFEST}: the row of seed {seed} lists {name!r}, which "
                           "is not in its shard folder; render that shard again into a fresh "
                           "folder, then merge")
    if not path.is_file():
        raise GantoolError(f"{folder}: {name} is listed but not on disk; run that shard again, "
                           "then merge")
    if "member" in row:
        if name not in members:
            members[name] = tar_members(path)
        if row["member"] not in members[name]:
            raise GantoolError(f"{path}: seed {seed}'s image {row['member']!r} is not in the "
                               "tar (cut short?); delete the tar, run that shard again, then "
                               "merge")
