"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class GantoolError(Exception):
    """A problem with the user's input (a path, a flag, a file), not a bug in gantool."""


class DataError(GantoolError):
    """A dataset that cannot be read or is empty."""


class ConfigError(GantoolError):
    """An invalid option, preset, or config file."""
