"""Entry point: the Typer app, and user errors printed as one line with exit code 2."""

from __future__ import annotations

import errno
import signal
import sys

import typer

from gantool import __version__
from gantool.cli import (
    bench,
    evaluate,
    explore,
    export,
    generate,
    import_generator,
    info,
    merge_shards,
    render,
    report,
    serve,
    spelling,
    train,
    video,
)
from gantool.errors import GantoolError, OptionError
from gantool.fileio import path_error_reason

app = typer.Typer(
    name="gantool",
    help="Train DCGAN-family image generators; measure, export, serve (Triton) and benchmark them.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("train", no_args_is_help=True)(train.train)
app.command("demo")(train.demo)
app.command("generate", no_args_is_help=True)(generate.generate)
app.command("merge-shards", no_args_is_help=True)(merge_shards.merge_shards)
app.command("video", no_args_is_help=True)(video.video)
app.command("export", no_args_is_help=True)(export.export)
app.command("info", no_args_is_help=True)(info.info)
app.command("import", no_args_is_help=True)(import_generator.import_generator)
app.command("eval", no_args_is_help=True)(evaluate.evaluate)
app.command("report", no_args_is_help=True)(report.report)
app.command("serve", no_args_is_help=True)(serve.serve)
app.command("render", no_args_is_help=True)(render.render)
app.command("explore")(explore.explore)
app.command("bench")(bench.bench)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gantool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Train DCGAN-family image generators; measure, export, serve (Triton) and benchmark them."""


def command():
    """The app as a command whose help names values as words: no metavar for a flag, the
    choices for a fixed set (a ``Literal``: shell completion offers them), the upper-case name
    for anything else, never a Python type."""
    root = typer.main.get_command(app)
    for cmd in [root, *getattr(root, "commands", {}).values()]:
        _plain_help_option(cmd)
        for param in cmd.params:
            if param.param_type_name == "argument":  # its name says it; no type beside it
                param.display_type_rich = lambda ctx: ""
            if param.metavar is not None:
                continue
            described = getattr(param, "type_descriptor", None)
            if getattr(param, "is_flag", False):
                param.metavar = ""
            elif described is not None and described.is_choice:
                param.metavar = "|".join(map(str, described.choices))
            else:
                param.metavar = param.name.upper()
    return root


def _plain_help_option(cmd) -> None:
    """``--help`` is made when help is drawn: give it no metavar either."""
    make = cmd.get_help_option

    def get_help_option(ctx):
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    cmd.get_help_option = get_help_option


# a path the user named that cannot be written or made: under a file, /proc, no permission
PATH_ERRORS = (errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ENOENT,
               errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST)


def main(argv: list[str] | None = None) -> None:
    """Console script: run the app, turning user errors into one line on stderr and exit 2,
    and SIGTERM into what Ctrl-C does (whole files, workers stopped, exit 143)."""
    _STOPPED_BY.clear()
    args = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    # (training installs its own handlers while it runs; the caller's come back at the end)
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _main(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Spellings renamed for one name per concept: they still work this release, with a notice.
DEPRECATED = {("export", "--format"): "--formats", ("export", "--batch"): "--batch-profile",
              ("bench", "--batch"): "--batch-sizes", ("generate", "--outdir"): "--out",
              ("render", "--outdir"): "--out"}


def deprecation_notices(args: list[str]) -> list[str]:
    """One line per old spelling in a command line (``--old`` or ``--old=value``, before a
    ``--``)."""
    words = args[:args.index("--")] if "--" in args else args
    command = words[0] if words else ""
    used = {w.partition("=")[0] for w in words[1:] if w.startswith("--")}
    return [f"note: {command} {old} is deprecated and will be removed; use {new}"
            for (cmd, old), new in DEPRECATED.items() if cmd == command and old in used]


def _main(args: list[str]) -> None:
    for line in deprecation_notices(args):
        typer.echo(line, err=True)
    try:
        # obj: the command line itself, which generate's engines run again for each shard
        code = command().main(args=args, standalone_mode=False, prog_name="gantool",
                              obj={"argv": args})
    except typer.TyperException as e:  # bad flags or values, as parsed by Typer
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx else "gantool"
        message = e.format_message().replace("Value error, ", "")  # Typer's choice wording
        _fail(f"{message} (see '{where} --help')")
    except GantoolError as e:
        _fail(user_message(e, args[0] if args else ""))
    except OSError as e:  # the machine's limits or a path given, not a defect
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # a full disk, read-only
            _fail(f"cannot write {e.filename or 'a file'}: {e.strerror}")
        if e.errno in PATH_ERRORS and e.filename:
            _fail(f"cannot write {e.filename}: {path_error_reason(e)}")
        raise
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    if code == 130 and _STOPPED_BY:  # Typer returns 130 for a KeyboardInterrupt
        hint = ("; the files written are whole: run the same command again to finish (it "
                "skips them)" if args[:1] in (["generate"], ["render"]) else "")
        term = _STOPPED_BY[0] == signal.SIGTERM
        typer.echo(f"{'terminated (SIGTERM)' if term else 'interrupted'}{hint}", err=True)
        sys.exit(143 if term else 130)
    sys.exit(code if isinstance(code, int) else 0)


_STOPPED_BY: list[int] = []  # the signal that stopped the command


def _stop(signum, frame) -> None:
    """Ctrl-C and SIGTERM (a scheduler's preemption) alike: KeyboardInterrupt, so every command
    cleans up the same way (whole files, workers drained, temp files removed)."""
    _STOPPED_BY.append(signum)
    raise KeyboardInterrupt


def user_message(e: GantoolError, command_name: str) -> str:
    """A user error's line; an ``OptionError`` names the option by the flag of the command
    ``command_name`` that sets it (the library names it as it does)."""
    if isinstance(e, OptionError):
        return e.spelt(lambda option: flag_of(option, command_name))
    return str(e)


def flag_of(option: str, command_name: str) -> str:
    """The flag of ``gantool COMMAND_NAME`` that sets ``option`` (``spelling.flag_of``)."""
    cmd = typer.main.get_command(app)
    return spelling.flag_of(option, getattr(cmd, "commands", {}).get(command_name, cmd).params)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(2)


if __name__ == "__main__":
    main()
