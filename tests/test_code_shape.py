"""The code's shape: inference never imports training, and checkpoints written by earlier
versions still load."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import gantool_cli

FIXTURES = Path(__file__).parent / "fixtures"
OLD = FIXTURES / "checkpoint-5afadd2.pt"  # made by commit 5afadd2 (tiny 28 px, nz 8, 4 steps)

INFERENCE = ["gantool.backends", "gantool.backends.torch_backend",
             "gantool.backends.onnx_backend", "gantool.backends.trt_backend",
             "gantool.backends.triton_backend",
             "gantool.artifacts", "gantool.model_info", "gantool.export", "gantool.export.pipeline",
             "gantool.export.folder", "gantool.serve", "gantool.serve.client",
             "gantool.serve.server", "gantool.export.triton", "gantool.bench",
             "gantool.sampling.draw", "gantool.sampling.pipeline",
             "gantool.sampling.video", "gantool.sampling.walk", "gantool.sampling.engines",
             "gantool.sampling.engines.processes", "gantool.sampling.engines.ray_actors",
             "gantool.models.checkpoint", "gantool.explore.session", "gantool.explore.app",
             "gantool.importers", "gantool.importers.nvidia", "gantool.importers.stylegan",
             "gantool.models.stylegan2", "gantool.models.stylegan3",
             "gantool.importers.lightweight_gan", "gantool.models.lightweight_gan",
             "gantool.importers.fastgan", "gantool.models.fastgan_pytorch"]


def loaded_by(modules: list[str]) -> list[str]:
    """The gantool modules a fresh interpreter has loaded after importing ``modules``."""
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gantool.'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def test_inference_never_imports_training():
    loaded = loaded_by(INFERENCE)
    assert "gantool.backends.torch_backend" in loaded
    assert not [m for m in loaded if m.startswith(("gantool.train", "gantool.cli"))], loaded


# what draws images: it reads what export wrote without importing the export code
DRAWING = [m for m in INFERENCE if not m.startswith(("gantool.export", "gantool.bench"))]


def test_drawing_never_imports_export():
    loaded = loaded_by(DRAWING)
    assert "gantool.backends.trt_backend" in loaded and "gantool.serve.client" in loaded
    assert not [m for m in loaded if m.startswith("gantool.export")], loaded


def test_drawing_from_a_checkpoint_does_not_import_training(tmp_path):
    code = ("import sys\nfrom gantool.backends import load_backend\n"
            f"g = load_backend('torch', {str(OLD)!r})\ng.generate([0, 1], 0.8)\n"
            "print(sorted(m for m in sys.modules if m.startswith('gantool.train')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_a_checkpoint_of_an_earlier_version_loads_draws_and_resumes(tmp_path):
    from gantool.backends import load_backend

    images = load_backend("torch", str(OLD)).generate([0, 1, 2, 3], 0.8)
    before = np.load(FIXTURES / "checkpoint-5afadd2-seeds-0-3.npy")  # drawn by 5afadd2
    assert images.shape == before.shape == (4, 28, 28, 1)
    assert np.abs(images.astype(int) - before.astype(int)).max() <= 1
    r = gantool_cli("info", OLD)
    assert r.returncode == 0 and "gantool checkpoint" in r.stdout and "nz" in r.stdout, r.stderr
    run_dir = tmp_path / "00001-fixture"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-0000004.pt").write_bytes(OLD.read_bytes())
    r = gantool_cli("train", "--resume", run_dir, "--steps", "6", "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6


def test_every_checkpoint_is_the_one_record(tiny_ckpt, tmp_path):
    """Training's step files and last.pt, an earlier version's file and a hand-made record
    hold the entries gantool.models.checkpoint declares, and read back through it; a newer
    format is one line asking for an upgrade."""
    import torch

    from gantool.models.checkpoint import (
        ENTRIES,
        FORMAT,
        load_checkpoint,
        record,
        write_checkpoint,
    )

    envelope = {"format", "gantool_version"}
    for path, added_since in ((tiny_ckpt, set()), (OLD, {"origin"})):
        written = torch.load(path, weights_only=True)
        assert set(written) == set(ENTRIES) - added_since | envelope, path
        assert written["format"] == FORMAT
        assert load_checkpoint(path)["origin"] is None
    made = record(config=torch.load(OLD, weights_only=True)["config"], step=3, G={})
    write_checkpoint(made, tmp_path / "made.pt")
    read = load_checkpoint(tmp_path / "made.pt")
    assert set(read) == set(ENTRIES) | envelope and read["step"] == 3 and read["best"] is None
    with pytest.raises(ValueError):
        record(config={}, step=0, G={}, weights={})
    made["format"] = "gantool-checkpoint-v9"
    torch.save(made, tmp_path / "newer.pt")
    r = gantool_cli("info", tmp_path / "newer.pt")
    assert r.returncode == 2 and "gantool-checkpoint-v9" in r.stderr and "upgrade" in r.stderr


@pytest.mark.slow  # a few seconds: the fast tier stays under 3 minutes
def test_drawing_reads_only_the_checkpoints_model_section(tiny_ckpt, tmp_path):
    import torch

    from gantool.backends import load_backend
    from gantool.errors import GantoolError

    state = torch.load(tiny_ckpt, weights_only=True)
    state["config"]["train"]["an_option_of_another_version"] = 1
    state["config"]["train"]["lr_g"] = "fast"
    path = tmp_path / "other-version.pt"
    torch.save(state, path)
    want = load_backend("torch", str(tiny_ckpt)).generate([0, 1], None)
    assert np.array_equal(load_backend("torch", str(path)).generate([0, 1], None), want)
    r = gantool_cli("info", path)
    assert r.returncode == 0 and "nz" in r.stdout, r.stderr
    state["config"]["model"]["nz"] = 0
    torch.save(state, path)
    with pytest.raises(GantoolError, match="model.nz must be at least 1"):
        load_backend("torch", str(path))


TESTS = Path(__file__).parent
DATA_NAMES = {"SHARED", "FASHION_MNIST", "TWEMOJI_TAR"}  # conftest's paths to ../shared
SHARED_NAMES = re.compile(rf"\b({'|'.join(sorted(DATA_NAMES))})\b")


def test_no_test_finds_the_shared_data_but_through_conftest():
    """conftest owns the path to ../shared (and its GANTOOL_TEST_SHARED override), so that the
    guard below can hide the data from every test that uses it."""
    own = [p.name for p in TESTS.glob("*.py") if p.name != "conftest.py"
           and re.search(r"parents\[\d\]\s*/\s*[\"']shared|Path\([\"'][./]*shared", p.read_text())]
    assert not own, f"these modules build their own path to ../shared: {own}"


def shared_names(tree: ast.Module, seeds: set[str]) -> set[str]:
    """The top-level names of a module (functions, fixtures, classes, variables) that reach the
    shared data: those whose decorators, arguments (fixtures are arguments) or body name one of
    ``seeds`` or another such name, to a fixed point; ``seeds`` included."""
    found = set(seeds)
    items = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined = {node.name}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        else:
            continue
        used = set()
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                used.add(n.id)
            elif isinstance(n, ast.Attribute):
                used.add(n.attr)
            elif isinstance(n, ast.arg):
                used.add(n.arg)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                used.add(n.value)  # @pytest.mark.usefixtures("name")
        items.append((defined, used))
    grew = True
    while grew:
        grew = False
        for defined, used in items:
            if not defined <= found and used & found:
                found |= defined
                grew = True
    return found


def shared_data_tests() -> dict[str, list[str]]:
    """module -> node ids of its tests that reach the shared data (directly, through a module
    function, fixture or variable, or through a conftest fixture that does)."""
    seeds = shared_names(ast.parse((TESTS / "conftest.py").read_text()), DATA_NAMES)
    tests = {}
    for p in sorted(TESTS.glob("test_*.py")):
        if p.name == Path(__file__).name or not SHARED_NAMES.search(p.read_text()):
            continue
        tree = ast.parse(p.read_text())
        found = shared_names(tree, seeds)
        if "pytestmark" in found:  # a mark on the whole module: all of it
            tests[f"tests/{p.name}"] = [f"tests/{p.name}"]
            continue
        tests[f"tests/{p.name}"] = [
            f"tests/{p.name}::{node.name}" for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name.startswith(("test", "Test")) and node.name in found]
    return tests


def test_the_tests_that_reach_the_shared_data_are_found():
    """The guard below runs only these: the ones that name the data, reach it through a
    fixture (test_diversity's ``emoji``) or use it when it is there (test_builtin_sample)."""
    tests = shared_data_tests()
    assert "tests/test_data.py" in tests and all(tests.values()), tests
    found = {t for ids in tests.values() for t in ids}
    for node in ("tests/test_diversity.py::test_layout_checks",
                 "tests/test_data.py::test_builtin_sample",
                 "tests/test_data.py::test_real_fashion_mnist_folder",
                 "tests/test_quality.py::test_one_epoch_draws_garments"):
        assert node in found, node
    assert "tests/test_diversity.py::test_guard_watches_diversity_only_once_the_run_was_varied" \
        not in found


@pytest.mark.slow
def test_tests_that_use_the_shared_data_skip_without_it(tmp_path):
    """A user's clone has no ../shared beside it: every module that uses the shared datasets
    imports with them absent, and each of its tests that reaches them passes or is skipped with
    its reason (the module's other tests run the same either way: the main run covers them)."""
    tests = shared_data_tests()
    assert "tests/test_data.py" in tests
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        *sum(tests.values(), [])], cwd=TESTS.parent, capture_output=True,
                       text=True, timeout=900,
                       env={**os.environ, "GANTOOL_TEST_SHARED": str(tmp_path / "absent")})
    assert r.returncode == 0, r.stdout[-3000:]
    skips = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert skips and all("shared" in ln or "absent" in ln for ln in skips), skips


def _scripts_module(name: str):
    """A module of scripts/ (the import graph's), loaded by path."""
    import importlib.util

    path = TESTS.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_import_circles():
    """No module reaches itself through imports, at the top of a file or inside a function
    (``scripts/import_graph.py`` prints the graph, its circles and the largest modules)."""
    graph = _scripts_module("import_graph")
    edges = graph.import_graph()
    assert "gantool.cli.generate" in edges["gantool.cli.main"]  # the graph is read
    assert graph.circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert graph.circles(edges) == []


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
# Other programs' arguments, and a document of commands, that the library writes as they are
OTHER_PROGRAMS = {
    "gantool/serve/server.py": {  # tritonserver's command line
        "--model-repository", "--http-address", "--http-port", "--grpc-address", "--grpc-port",
        "--exit-on-error", "--exit-timeout-secs", "--allow-metrics", "--metrics-address",
        "--metrics-port", "--backend-config", "--backend-directory"},
    "gantool/train/hardware.py": {"--nproc_per_node"},  # torchrun's
    "gantool/config/schema.py": {"--logdir"},  # tensorboard's
    # the README written into a Triton repository: the commands that serve and query it, as a
    # document (docker's and tritonserver's arguments, and gantool's)
    "gantool/export/triton.py": {"--formats", "--http-port", "--grpc-port", "--gpus",
                                 "--shm-size", "--model-repository", "--url", "--seeds",
                                 "--truncation", "--out"},
    "gantool/sampling/engines/ray_actors.py": {"--head"},  # ray start --head
}


def library_flags() -> list[str]:
    """``file:line: --flag`` for each command-line flag spelt in a string of the library (every
    module outside gantool/cli/, docstrings aside), less OTHER_PROGRAMS'."""
    found = []
    for path in sorted((TESTS.parent / "gantool").rglob("*.py")):
        rel = path.relative_to(TESTS.parent).as_posix()
        if rel.startswith("gantool/cli/"):
            continue
        tree = ast.parse(path.read_text())
        docs = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docs:
                found += [f"{rel}:{node.lineno}: {flag}" for flag in FLAG.findall(node.value)
                          if flag not in OTHER_PROGRAMS.get(rel, ())]
    return found


def test_the_library_names_options_and_the_cli_spells_flags():
    """Errors and hints of the library name an option (``OptionError("batch_size", ...)``, or
    ``{batch_size}`` in its message) and the CLI spells it as the running command's flag, so
    a renamed flag is renamed in one place; only other programs' arguments are spelt out."""
    from gantool.errors import OptionError

    assert library_flags() == []
    said = OptionError(None, "lower {batch_size}, or pass {workers} 1 ({{not}} {x_y})")
    assert said.spelt(lambda o: f"--{o.replace('_', '-')}") == \
        "lower --batch-size, or pass --workers 1 ({not} --x-y)"
    assert str(OptionError("class", "no such class", see="seeds")) == \
        "class: no such class (see seeds)"
