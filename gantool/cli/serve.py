"""`gantool serve`: start Triton Inference Server on a model repository."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from gantool.cli import options
from gantool.errors import GantoolError


def serve(
    repository: Path = typer.Argument(..., help="A model repository written by gantool export "
                                      "--format triton (EXPORT_DIR/model_repository)."),
    http_port: int = typer.Option(8000, help="HTTP/REST port."),
    grpc_port: int = typer.Option(8001, help="gRPC port."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every "
                             "interface)."),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus metrics on this port "
                                            "(off by default)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Triton's whole log (by "
                                 "default only its warnings and errors)."),
    timeout: float = options.seconds(120.0, "Seconds to wait for every model to be ready."),
) -> None:
    """Start Triton Inference Server on a gantool model repository; Ctrl-C stops it.

    Examples:

      gantool serve export/demo/model_repository

      gantool serve export/demo/model_repository --host 0.0.0.0 --metrics-port 8002
    """
    from gantool.artifacts import REPOSITORY, check_finished
    from gantool.serve.server import TritonServer, is_noise

    if not repository.is_dir():
        raise GantoolError(f"{repository} is not a folder; pass EXPORT_DIR/{REPOSITORY}")
    check_finished(repository)

    def show(line: str) -> None:
        if verbose or (line[:1] in ("E", "W") and not is_noise(line)):
            typer.echo(f"  triton | {line}", err=True)

    server = TritonServer(repository, http_port, grpc_port, host, metrics_port, log=show,
                          timeout=timeout)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.check()
        typer.echo(f"starting Triton on {repository} ...", err=True)
        server.launch()
        names = ", ".join(m["name"] for m in server.models())
        typer.echo(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}; models: "
                   f"{names}. Ctrl-C stops it.", err=True)
        code = server.process.wait()
        raise GantoolError(f"tritonserver stopped by itself ({server.exit_reason(code)})")
    except KeyboardInterrupt:
        typer.echo("stopping Triton ...", err=True)
    finally:
        code = server.stop()
        signal.signal(signal.SIGTERM, previous)
    typer.echo(f"Triton stopped (exit code {code})", err=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # a clean stop, exit 0: SIGTERM is how a service manager stops it
