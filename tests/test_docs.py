"""The manual: docs/ builds as a MkDocs site under --strict (every link, anchor and figure found),
its CLI reference is the Typer app's, and the README's links land on pages and headings."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["index", "training", "presets", "sampling", "export-serving", "rendering-at-scale",
         "quality", "benchmarks", "architecture", "cli", "options"]

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("mkdocs", "material")),
    reason="mkdocs and mkdocs-material are not installed (pip install 'gantool[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_site_builds_under_strict(site):
    for page in PAGES:
        assert (site / f"{page}.html").is_file(), page


def test_cli_reference_is_the_typer_apps(site):
    import typer

    from gantool.cli.main import app

    root = typer.main.get_command(app)
    assert len(root.commands) >= 10
    html = (site / "cli.html").read_text()
    assert "<!-- cli-reference" not in html  # the marker was replaced
    for name, command in root.commands.items():
        assert f'id="gantool-{name}"' in html, f"no section for gantool {name}"
        for param in command.params:
            if not getattr(param, "hidden", False):
                for opt in [*param.opts, *param.secondary_opts]:
                    if opt.startswith("-"):
                        assert opt in html, f"gantool {name} {opt} is not in the reference"
    assert "<code>--truncation " in html


def test_run_options_are_the_schemas(site):
    """Every option of the run configuration, with its flag where it has one."""
    from gantool.cli.train import config_options as options

    html = (site / "options.html").read_text()
    assert "<!-- options-reference" not in html
    for o in options():
        assert f"<code>{o.key}</code>" in html, o.key
        if o.flag:
            assert f"<code>{o.flag}</code>" in html, o.flag


def test_preset_values_are_the_codes(site):
    from gantool.config import PRESETS

    html = (site / "presets.html").read_text()
    assert "<!-- preset-values" not in html
    for name, preset in PRESETS.items():
        assert f"<code>{name}</code>" in html, name
        for key in preset.values:
            assert f"<code>{key}=" in html, (name, key)


def test_committed_cli_page_is_a_stub():
    text = (ROOT / "docs" / "cli.md").read_text()
    assert "<!-- cli-reference" in text
    assert "## gantool" not in text  # the hook writes the commands; nothing generated is kept


def test_readme_links_land(site):
    """README.md links into docs/: every target exists, and every #anchor is a heading there."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)\s]+)\)", readme)
    links += re.findall(r'src="(docs/[^"]+)"', readme)
    assert len(links) >= 10
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).is_file(), link
        if anchor:
            page = site / Path(path).relative_to("docs").with_suffix(".html")
            assert f'id="{anchor}"' in page.read_text(), link
