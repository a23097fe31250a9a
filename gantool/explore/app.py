"""The explore page over HTTP: one HTML page and a small JSON/PNG API (Starlette, served by
Uvicorn: the ``explore`` extra).

    GET /                  the page (``page.html``: no external scripts, fonts or styles)
    GET /api/info          the model, backend, device and request bounds
    GET /api/grid          ?start&count&truncation&class: draw a page of seeds
    GET /api/image.png     ?seed&truncation&class: one seed's PNG (gantool generate's bytes)
    GET /api/walk          ?seeds&frames_per_seed&truncation&class: draw a walk's frames
    GET /api/frame.png     ?seeds&frames_per_seed&frame&truncation&class: one frame's PNG

A bad value is answered 400 with ``{"error": "..."}`` (one line, shown on the page); an
unexpected failure 500 with its one-line reason, printed with its traceback on the server's
terminal. Neither stops the server. Requests name no files: the model is the one given on the
command line.
"""

from __future__ import annotations

import socket
import sys
import traceback
from importlib import resources

from gantool.errors import GantoolError, OptionError, literal
from gantool.explore.session import Explorer

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def need_explore():
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise GantoolError("gantool explore needs the explore extra: pip install "
                           "'gantool[explore]'") from None


def create_app(explorer: Explorer, host: str = "127.0.0.1"):
    """The Starlette app for ``explorer``. Bound to a loopback ``host``, it answers only
    requests addressed to a loopback name (a web page elsewhere cannot reach it through DNS
    rebinding)."""
    need_explore()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = resources.files("gantool.explore").joinpath("page.html").read_text("utf-8")

    def answer(make, png: bool):
        def endpoint(request):
            try:
                out = make(request.query_params)
            except GantoolError as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            except Exception as e:  # noqa: BLE001 - the page shows it; the server keeps going
                traceback.print_exc(file=sys.stderr)
                reason = str(e).splitlines()[0] if str(e) else ""
                return JSONResponse({"error": f"internal error: {type(e).__name__}: {reason}"},
                                    status_code=500)
            if png:  # a URL names its image completely: the browser may keep it
                return Response(out, media_type="image/png",
                                headers={"Cache-Control": "private, max-age=3600"})
            return JSONResponse(out)

        return endpoint

    routes = [
        Route("/", lambda request: HTMLResponse(page)),
        Route("/api/info", answer(lambda q: explorer.info(), png=False)),
        Route("/api/grid", answer(explorer.grid, png=False)),
        Route("/api/image.png", answer(explorer.image, png=True)),
        Route("/api/walk", answer(explorer.walk, png=False)),
        Route("/api/frame.png", answer(explorer.frame, png=True)),
    ]
    hosts = [*LOOPBACK, "[::1]"] if host in LOOPBACK else ["*"]
    return Starlette(routes=routes, middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port), or a one-line error naming
    the option to change (``port``, or ``host`` when any port was asked for)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = "pass another {port} (0: any free one)" if port else "check {host}"
        raise OptionError(None, literal(f"cannot listen on {host}:{port}: {e.strerror or e}; ")
                          + hint) from None
    sock.listen(128)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(explorer: Explorer, sock: socket.socket, host: str) -> None:
    """Answer the page on ``sock`` until Ctrl-C (or SIGTERM)."""
    import uvicorn

    config = uvicorn.Config(create_app(explorer, host), log_level="warning", access_log=False,
                            lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
