"""The README's and the manual's first commands run as pasted, after `make demo`.

A shell block that this test runs is a ```bash fence with the line
`<!-- test: run after make demo -->` immediately above it (an HTML comment: GitHub and MkDocs
show nothing); every command in such a block is a `gantool` command whose paths are the demo's
(`runs/00001-demo`, its `checkpoints/last.pt`, `config.json`, `metrics.jsonl`, `samples`) or
ones an earlier `--out`/`--grid`/`--frames-dir` of the block writes, relative and below the
folder it runs in.

The slow test runs each marked block with bash (set -euo pipefail) in a temporary folder that
holds the output of `gantool demo --out runs --steps 20` (the paths of `make demo`'s 600
steps), `gantool` found on the PATH as after `source .venv/bin/activate`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/index.md")
MARKER = "<!-- test: run after make demo -->"
DEMO = "runs/00001-demo"
DEMO_PATHS = {DEMO, f"{DEMO}/checkpoints/last.pt", f"{DEMO}/config.json",
              f"{DEMO}/metrics.jsonl", f"{DEMO}/samples"}
OUTPUT_FLAGS = {"--out", "--outdir", "--grid", "--frames-dir"}
NOT_PATHS = {"--shard", "--url", "--address"}  # options whose values may hold a "/"
SHELL_TOKENS = {"&", "&&", "|", "||", ";", ">", ">>", "<"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the fence, 1-based
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def commands(self) -> list[list[str]]:
        joined = self.text.replace("\\\n", " ")
        return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def marked_blocks(page: str) -> list[Block]:
    lines = (ROOT / page).read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        assert i + 1 < len(lines) and lines[i + 1].strip() == "```bash", (
            f"{page}:{i + 1}: {MARKER} must be the line right above a ```bash fence")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
        blocks.append(Block(page, i + 2, "\n".join(lines[i + 2:end]) + "\n"))
    return blocks


BLOCKS = [b for page in PAGES for b in marked_blocks(page)]
SAME_TEXT: dict[str, list[Block]] = {}  # a block pasted in both pages runs once
for _b in BLOCKS:
    SAME_TEXT.setdefault(_b.text, []).append(_b)


def outputs_of(argv: list[str]) -> list[str]:
    return [argv[k + 1] for k, a in enumerate(argv[:-1]) if a in OUTPUT_FLAGS]


def norm(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    assert not p.is_absolute() and ".." not in p.parts and not path.startswith("~"), (
        f"{path}: not a relative path below the folder the block runs in")
    return p


def test_readme_and_manual_have_marked_blocks():
    pages = {b.page for b in BLOCKS}
    assert pages == set(PAGES), f"no {MARKER} block in {set(PAGES) - pages}"
    for page in PAGES:  # a marker that the extraction missed would be a block never run
        assert (ROOT / page).read_text().count(MARKER) == sum(b.page == page for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_marked_block_names_only_the_demos_paths_or_its_own(block):
    """Each command is gantool's, with no shell operators, and every path it reads is the demo's
    or one an earlier command of the block wrote."""
    made: list[PurePosixPath] = []
    for argv in block.commands():
        assert argv[0] == "gantool", f"{block.id}: {shlex.join(argv)}: not a gantool command"
        assert argv[1] not in ("explore", "serve"), f"{block.id}: a server does not return"
        assert not SHELL_TOKENS & set(argv), f"{block.id}: {shlex.join(argv)}: shell operators"
        outs = outputs_of(argv)
        for k, arg in enumerate(argv[2:], 2):
            if arg.startswith("-") or "/" not in arg or argv[k - 1] in OUTPUT_FLAGS | NOT_PATHS:
                continue
            p = norm(arg)
            assert str(p) in DEMO_PATHS or any(p == m or m in p.parents for m in made), (
                f"{block.id}: {arg} is neither the demo's nor written earlier in the block")
        made += [norm(o) for o in outs]


def _bash(script: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``script`` with bash -euo pipefail in ``cwd``, gantool on the PATH (the venv's bin,
    as after `source .venv/bin/activate`), HOME, caches and temporary files inside ``cwd``."""
    home = cwd / ".home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "MPLCONFIGDIR": str(home / ".matplotlib"), "TMPDIR": str(home), "COLUMNS": "200"}
    return subprocess.run(["bash", "-c", "set -euxo pipefail\n" + script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory) -> Path:
    """runs/ as `make demo` leaves it, from 20 steps instead of 600."""
    folder = tmp_path_factory.mktemp("demo")
    done = _bash("gantool demo --out runs --steps 20 --no-progress", folder)
    rc = done.returncode
    assert rc == 0, done.stdout + done.stderr
    for path in DEMO_PATHS:
        assert (folder / path).exists(), f"the demo did not write {path}"
    return folder / "runs"


@pytest.mark.slow
@pytest.mark.parametrize("same", SAME_TEXT.values(), ids=lambda s: "+".join(b.id for b in s))
def test_marked_block_runs_after_the_demo(same, demo_runs, tmp_path):
    block, where = same[0], " and ".join(b.id for b in same)
    shutil.copytree(demo_runs, tmp_path / "runs")
    done = _bash(block.text, tmp_path)
    rc = done.returncode
    assert rc == 0, (
        f"{where} failed (exit {rc}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    for argv in block.commands():
        for out in outputs_of(argv):
            assert (tmp_path / out).exists(), f"{where}: {shlex.join(argv)} wrote no {out}"
