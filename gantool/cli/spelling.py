"""How the CLI spells an option the library names (``OptionError``, ``{name}`` in a message):
as the flag of the command that reads it."""

from __future__ import annotations

from gantool.errors import OptionError


def flag_of(option: str, params) -> str:
    """The flag among a command's ``params`` that sets ``option`` (a parameter of that name, or
    one spelt ``--option``), else ``--option``."""
    dashed = f"--{option.replace('_', '-')}"
    for p in params:
        if p.name == option or dashed in p.opts:
            return next((o for o in p.opts if o.startswith("--")), dashed)
    return dashed


def spelt(text: str, params) -> str:
    """A line of the library that names options as ``{name}``, each spelt as a flag."""
    return OptionError(None, text).spelt(lambda option: flag_of(option, params))
