"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

import difflib
import re

OPTION_NAME = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_]*)\}")  # {grid} in a message; {{ is {


def did_you_mean(word: str, options) -> str:
    """' (did you mean \'x\'?)' for the closest of ``options``, or ''."""
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def first_line(e: BaseException, limit: int = 160) -> str:
    """An exception's first line (its type's name when it has no text), for a one-line error
    about a file whose reader failed."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


class GantoolError(Exception):
    """A problem with the user's input (a path, a flag, a file), not a bug in gantool."""


class DataError(GantoolError):
    """A dataset that cannot be read or is empty."""


class ConfigError(GantoolError):
    """An invalid option, preset, or config file."""


class PartialBatch(GantoolError):
    """Some seeds of a ``generate`` call failed (a remote backend): the seeds and uint8 images
    that did arrive, and ``failures`` as (first seed, last seed, reason) per failed range."""

    def __init__(self, seeds, images, failures: list[tuple[int, int, str]]):
        self.seeds, self.images, self.failures = list(seeds), images, failures
        lo, hi, reason = failures[0]
        more = f" (and {len(failures) - 1} more ranges)" if len(failures) > 1 else ""
        super().__init__(f"seeds {lo}-{hi} failed: {reason}{more}")



class OptionError(GantoolError):
    """A bad value of one option, named as the library names it (``"class"``, ``"batch"``),
    with a message that names no command-line flag: the CLI puts the flag it reads that option
    from in front (``--class: ...``), other callers (the explore page) the name. ``see``: a
    related option the user may want instead. With ``option`` None the message names the
    options it is about itself, as ``{name}`` (``"{engine} ray renders into {out}"``), each
    spelt the same way; text of the user's or of another library goes in through ``literal``."""

    def __init__(self, option: str | None, message: str, see: str | None = None):
        self.option, self.message, self.see = option, message, see
        super().__init__(option, message, see)  # what pickling rebuilds it from

    def __str__(self) -> str:
        return self.spelt(str)

    def spelt(self, flag) -> str:
        """The message with each option spelt by ``flag(name)``."""
        see = f" (see {flag(self.see)})" if self.see else ""
        if self.option is not None:
            return f"{flag(self.option)}: {self.message}{see}"
        return OPTION_NAME.sub(lambda m: flag(m[1]) if m[1] else m[0][0], self.message) + see


def literal(text: object) -> str:
    """``text`` as it reads inside a message that names options as ``{name}``."""
    return str(text).replace("{", "{{").replace("}", "}}")
