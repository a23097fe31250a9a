"""The gantool command line (Typer). Parsing only: the work happens in the library."""
