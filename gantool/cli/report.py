"""`gantool report`: the HTML page of a run."""

from __future__ import annotations

from pathlib import Path

import typer

from gantool.errors import GantoolError


def report(run_dir: Path = typer.Argument(..., help="A run directory (runs/NNNNN-name)."),
           out: Path | None = typer.Option(None, help="HTML file (default: "
                                           "RUN_DIR/report/index.html)")) -> None:
    """Write a self-contained HTML page of a run: curves, guard events, samples over time.

    Examples:

      gantool report runs/00001-demo

      gantool report runs/00001-demo --out fashion.html   (one file, nothing else)
    """
    from gantool.report import write_report

    if not run_dir.is_dir():
        raise GantoolError(f"{run_dir} is not a run directory")
    typer.echo(f"wrote {write_report(run_dir, out)}")
