"""MkDocs hook: the reference pages, generated from the code when the site is built.

docs/cli.md holds the page's introduction and a marker comment; this hook replaces the marker
with every command of ``gantool.cli.main`` (usage, examples, options grouped in the panels that
``--help`` shows). docs/options.md's marker becomes every run option of ``gantool.config``'s
schema (key, default, allowed values, help) with its train flag as ``gantool.cli.train`` spells
it, group by group (in train's help panels). Neither can drift from
the code; nothing this writes is committed.
"""

from __future__ import annotations

import html
import re

import click
from mkdocs.exceptions import PluginError
from rich.errors import StyleSyntaxError
from rich.style import Style

PAGE = "cli.md"
MARKER = re.compile(r"<!-- cli-reference\b.*?-->", re.S)
# the other generated parts: page -> (its marker, the function that writes it)
GENERATED = {"options.md": ("options-reference", lambda: options_reference()),
             "presets.md": ("preset-values", lambda: preset_values())}
OPTION = re.compile(r"(?<![\w`/-])(--?[A-Za-z][\w-]*)")
TAG = re.compile(r"(?<!\\)\[([^\[\]]*)\]")
EXAMPLE_NOTE = re.compile(r"\s{2,}\((.+)\)$")


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if page.file.src_uri in GENERATED:
        name, write = GENERATED[page.file.src_uri]
        marker = re.compile(rf"<!-- {name}\b.*?-->", re.S)
        if not marker.search(markdown):
            raise PluginError(f"{page.file.src_uri} has lost its '<!-- {name} -->' marker")
        text = write()
        return marker.sub(lambda _: text, markdown, count=1)
    if page.file.src_uri != PAGE:
        return markdown
    if not MARKER.search(markdown):
        raise PluginError(f"{PAGE} has lost its '<!-- cli-reference -->' marker")
    reference = cli_reference()
    return MARKER.sub(lambda _: reference, markdown, count=1)


def cli_reference() -> str:
    """Markdown for the root command and every subcommand, in ``gantool --help``'s order."""
    from gantool.cli.main import command  # the app as the console script builds it

    root = command()
    ctx = click.Context(root, info_name="gantool")
    names = root.list_commands(ctx)
    parts = [_command_section(root, ctx, "gantool")]
    rows = [f"| [{n}](#gantool-{n}) | {_inline(_paragraphs(root.commands[n].help)[0])} |"
            for n in names]
    parts.append("**Commands**\n\n| command | what it does |\n|---|---|\n" + "\n".join(rows))
    for name in names:
        sub = root.commands[name]
        parts.append(_command_section(sub, click.Context(sub, info_name=name, parent=ctx),
                                      f"gantool {name}"))
    return "\n\n".join(parts) + "\n"


def options_reference() -> str:
    """Markdown: a table per group of the run configuration's schema."""
    from gantool.cli.train import config_options

    groups: dict[str, list[str]] = {}
    for o in config_options():
        allowed = ", ".join(f"`{c}`" for c in o.choices) or _range(o)
        flag = f"`{o.flag}`" if o.flag else ""
        shown = _value(o.default)
        default = "none" if o.default is None else f"`{shown}`" if shown else "empty"
        groups.setdefault(o.panel, []).append(
            f"| `{o.key}` | {default} | {allowed} | {flag} | {_cell(o.help)} |")
    head = "| option | default | allowed | train flag | what it does |\n|---|---|---|---|---|\n"
    return "\n\n".join(f"## {group}\n\n{head}" + "\n".join(rows)
                       for group, rows in groups.items()) + "\n"


def preset_values() -> str:
    """Markdown: each preset's values as ``gantool.config.PRESETS`` holds them, and its source."""
    from gantool.config import PRESETS

    rows = [f"| `{name}` | " + "<br>".join(f"`{k}={_value(v)}`" for k, v in p.values.items())
            + f" | {_cell(p.source)} |" for name, p in PRESETS.items()]
    return ("| preset | values | source and measurements |\n|---|---|---|\n"
            + "\n".join(rows) + "\n")


def _value(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "{}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _range(o) -> str:
    if o.fraction:
        return "[0, 1)"
    if o.at_least is not None:
        return f">= {o.at_least}"
    return ""


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "\\|")


def _command_section(cmd: click.Command, ctx: click.Context, path: str) -> str:
    out = [f"## {path}"]
    for para in _paragraphs(cmd.help):
        lines = para.split("\n")
        if all(line.startswith("  ") for line in lines):  # an indented example command
            out.append("```bash\n" + "\n".join(_example(line) for line in lines) + "\n```")
        else:
            out.append(_inline(" ".join(line.strip() for line in lines)))
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    out.append(f"Usage:\n\n```text\n{path} {usage}\n```")
    for panel, rows in _panels(cmd, ctx, skip_help=path != "gantool").items():
        table = "\n".join(f"| `{names}` | {_inline(text)} |" for names, text in rows)
        out.append(f"**{panel}**\n\n| option | description |\n|---|---|\n{table}")
    return "\n\n".join(_merge_examples(out))


def _merge_examples(blocks: list[str]) -> list[str]:
    """Consecutive example paragraphs become one code block."""
    merged: list[str] = []
    for block in blocks:
        if merged and block.startswith("```bash") and merged[-1].startswith("```bash"):
            merged[-1] = merged[-1][: -len("\n```")] + block[len("```bash"):]
        else:
            merged.append(block)
    return merged


def _panels(cmd: click.Command, ctx: click.Context, skip_help: bool) -> dict[str, list]:
    """The parameters' help records by the panel ``--help`` shows them in: arguments, then the
    default options panel, then the named panels in the order they first appear."""
    panels: dict[str, list] = {"Arguments": [], "Options": []}
    for param in cmd.get_params(ctx):
        if skip_help and param.name == "help":
            continue
        record = param.get_help_record(ctx)
        if record is None:  # hidden
            continue
        default = "Arguments" if param.param_type_name == "argument" else "Options"
        panel = getattr(param, "rich_help_panel", None) or default
        panels.setdefault(panel, []).append(record)
    return {name: rows for name, rows in panels.items() if rows}


def _paragraphs(text: str | None) -> list[str]:
    return [p for p in (text or "").strip().split("\n\n") if p.strip()] or [""]


def _example(line: str) -> str:
    """``  gantool eval RUN   (a note)`` -> ``gantool eval RUN  # a note``."""
    return EXAMPLE_NOTE.sub(r"  # \1", line.strip())


def _plain(text: str) -> str:
    """Help text without Rich's style tags ([dim]...[/]); brackets that are not a style, such as
    ``[default: 30]`` or ``[file, class]``, are text and stay."""

    def tag(match: re.Match) -> str:
        inner = match.group(1)
        if inner.startswith("/"):
            return ""
        try:
            Style.parse(inner)
        except StyleSyntaxError:
            return match.group(0)
        return ""

    return TAG.sub(tag, text).replace("\\[", "[")


def _inline(text: str) -> str:
    """Plain help text as one Markdown table cell or paragraph: options in code, the rest
    escaped so that nothing in it is read as Markdown or HTML."""
    pieces = OPTION.split(_plain(text).replace("\n", " "))
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(f"`{piece}`")
        else:
            piece = html.escape(piece, quote=False)
            out.append(re.sub(r"([\\`*_\[\]|])", r"\\\1", piece))
    return "".join(out)
