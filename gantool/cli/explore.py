"""`gantool explore`: a local web page for looking at a generator."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import typer

from gantool.cli import options
from gantool.cli.choices import Backend, Precision, Protocol

MODEL = "Model"


def explore(
    model: Path | None = typer.Argument(
        None, help="A checkpoint (.pt) for torch; a .onnx file or export folder for onnx; a "
                   ".plan or export folder for trt. Leave out with --url."),
    url: str | None = typer.Option(
        None, help="Draw on a running Triton server (gantool serve) instead of MODEL: its "
                   "HOST:PORT."),
    protocol: Protocol = typer.Option("grpc", help="With --url: the port's protocol."),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on. 127.0.0.1: this machine only; 0.0.0.0: every "
                          "interface (anyone who reaches it can draw images)."),
    port: int = typer.Option(7860, min=0, max=65535, help="Port to listen on (0: any free one)."),
    open_page: bool = typer.Option(False, "--open", help="Open the page in this machine's web "
                                   "browser."),
    backend: Backend = options.backend(MODEL),
    device: str = options.device(MODEL),
    fp16: bool = options.fp16(MODEL),
    precision: Precision = options.precision(MODEL),
    ema: bool = options.ema(MODEL),
) -> None:
    """Explore a generator in the browser: seeds, truncation, walks, classes.

    Each image on the page downloads as the PNG gantool generate writes, with the command that
    draws it. Prints the page's address; Ctrl-C stops it.

    Examples:

      gantool explore runs/00001-demo/checkpoints/last.pt

      gantool explore export/faces --backend onnx --port 8080

      gantool explore --url localhost:8001

      gantool explore best.pt --host 0.0.0.0  (reachable from other machines)

    On a remote GPU machine, forward the port: ssh -L 7860:localhost:7860 gpu-box
    """
    from gantool.backends import check_source, open_source
    from gantool.explore.app import address, bind, need_explore, serve
    from gantool.explore.session import Explorer

    need_explore()  # the one-line hint before a model is opened
    check_source(model, url)
    sock = bind(host, port)  # a port in use is said before the model loads
    try:
        gen = open_source(model, url, protocol, backend, device=device, ema=ema, fp16=fp16,
                          precision=precision)
        if url is not None:
            name, used, where = url, f"triton-{protocol}", f"Triton at {url}"
            flags = f" --url {shlex.quote(url)}" + (" --protocol http" * (protocol == "http"))
            commands = Commands(f"gantool render{flags}", f"gantool video{flags}")
        else:
            name, used, where = _name(model), backend, _device(gen, backend)
            flags = _flags(model, backend, device, fp16, precision, ema)
            commands = Commands(f"gantool generate {flags}", f"gantool video {flags}")
        explorer = Explorer(gen, name, used, where, commands)
        typer.echo(f"gantool explore: {address(sock)} ({name}, {gen.resolution} px, {used} on "
                   f"{where}); Ctrl-C stops it", err=True)
        if open_page:
            import webbrowser

            webbrowser.open(address(sock))
        serve(explorer, sock, host)
    finally:
        sock.close()


def _flags(model: Path, backend: str, device: str, fp16: bool, precision: str,
           ema: bool) -> str:
    """MODEL and the backend options as given, for the commands the page shows."""
    out = shlex.quote(str(model))
    out += f" --backend {backend}" * (backend != "torch")
    out += f" --device {shlex.quote(device)}" * (device != "auto")
    out += " --fp16" * fp16 + f" --precision {precision}" * (precision != "fp32")
    return out + " --no-ema" * (not ema)


def _name(model: Path) -> str:
    """The model's name on the page: a checkpoint with its run's folder (runs/00001-x/
    checkpoints/best.pt: 00001-x/best.pt), else the file or folder name."""
    if model.parent.name == "checkpoints" and model.parent.parent.name:
        return f"{model.parent.parent.name}/{model.name}"
    return model.name


def _device(gen, backend: str) -> str:
    """Where ``gen`` runs, in words for the page."""
    if backend == "onnx":
        first = gen.session.get_providers()[0]
        return "cuda" if first.startswith("CUDA") else "cpu"
    return str(getattr(gen, "device", "cuda"))


@dataclass(frozen=True)
class Commands:
    """The commands that reproduce what the explore page shows (``session.Commands``):
    ``generate`` starts those that draw seeds (e.g. ``gantool generate export/m --backend
    onnx``), ``video`` those that draw walks."""

    generate: str
    video: str

    def image(self, seed: int, settings: dict) -> str:
        return f"{self.generate} --seeds {seed}{_settings(settings)} --out explore/"

    def walk(self, seeds: list[int], frames_per_seed: int, settings: dict) -> tuple[str, str]:
        base = (f"{self.video} --seeds {','.join(map(str, seeds))} --frames-per-seed "
                f"{frames_per_seed}{_settings(settings)}")
        return f"{base} --frames-dir walk/", f"{base} --out walk.gif"


def _settings(settings: dict) -> str:
    out = ""
    if "truncation" in settings:
        t = settings["truncation"]
        out += f" --truncation {'none' if t is None else repr(t)}"
    if "class" in settings:
        out += f" --class {shlex.quote(settings['class'])}"
    return out
