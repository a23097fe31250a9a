"""Progress that reads well anywhere: a live bar in a terminal, plain lines in a log.

In a terminal, ``StepProgress`` is a rich bar that advances every step (so its ETA holds from
the first steps) with the latest figures beside it, narrow enough for 80 columns. Where stderr
is not a terminal (``> train.log 2>&1``, nohup, a cluster job, CI), a bar only draws its final
state, so it writes one plain line every ``every`` seconds instead, and one at every event
(sample grid, checkpoint, evaluation, rollback): what ``tail -f`` should show. A timer keeps
that promise while a step takes longer than ``every`` (a slow first step, a megapixel step on a
CPU): its line says which step is running and for how long.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY_S = 30.0


def clock(seconds: float) -> str:
    """3725 -> '1:02:05'; a day or more counts days: 183725 -> '2 days 3:02:05'."""
    seconds = max(0, int(seconds))
    days, hours = divmod(seconds // 3600, 24)
    text = f"{hours}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{days} day{'s' if days > 1 else ''} {text}" if days else text


class StepProgress:
    """``with StepProgress(console, "train", total, start) as p: p.advance(step, figures)``.

    ``figures`` are the latest values (name -> text), shown beside the bar and in every plain
    line; ``short`` names those that fit beside the bar at 80 columns. ``print(text)`` prints an
    event above the bar (in plain mode the status line follows), so it stands in for a Console
    where events are reported. ``enabled=False`` shows only events. ``unit``: what one count is
    ("step"), for the timer's line while one takes long.
    """

    def __init__(self, console: Console, label: str, total: int, start: int = 0,
                 enabled: bool = True, every: float = PLAIN_EVERY_S,
                 short: tuple[str, ...] = (), unit: str | None = None):
        self.console, self.label, self.total, self.start = console, label, total, start
        self.every, self.short, self.unit = every, short, unit
        self.live = enabled and console.is_terminal
        self.plain = enabled and not console.is_terminal
        self.done, self.figures, self._shown = start, {}, start
        self._t0 = self._last_line = self._last_step = time.perf_counter()
        self._lock, self._quit = threading.Lock(), threading.Event()
        self._timer: threading.Thread | None = None
        self._text = ""  # the last status line
        self._bar = Progress(TextColumn(f"[bold]{label}"), MofNCompleteColumn(),
                             BarColumn(bar_width=12), TimeElapsedColumn(), TextColumn("eta"),
                             TimeRemainingColumn(), TextColumn("{task.fields[figures]}"),
                             console=console, disable=not self.live)
        self._task = None

    def __enter__(self) -> StepProgress:
        self._bar.__enter__()
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.start,
                                        figures="")
        if self.plain and self.every > 0:
            self._quit.clear()
            self._timer = threading.Thread(target=self._heartbeat, daemon=True,
                                           name="gantool-status")
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._quit.set()
            self._timer.join()
            self._timer = None
        self._bar.__exit__(*exc)

    def _heartbeat(self) -> None:
        """The status line every ``every`` seconds when no step brought one (at most one a
        second: its clock counts whole seconds)."""
        every = max(self.every, 1.0)
        while not self._quit.wait(1.0):
            if time.perf_counter() - self._last_line >= every:
                self._line()

    def advance(self, done: int, figures: dict[str, str] | None = None) -> None:
        if done != self.done:
            self.done, self._last_step = done, time.perf_counter()
        if figures is not None:
            self.figures = figures
            shown = "  ".join(f"{k} {figures[k]}" for k in self.short if k in figures)
            self._bar.update(self._task, completed=done, figures=shown)
        else:
            self._bar.update(self._task, completed=done)
        if self.plain and time.perf_counter() - self._last_line >= self.every:
            self._line()

    def print(self, text: str) -> None:
        """An event: a line above the bar; in plain mode the status line follows it."""
        self._bar.console.print(text, highlight=False, soft_wrap=True)  # whole, for grep
        self.mark()

    def mark(self) -> None:
        """A quiet event (a checkpoint): the status line in plain mode, nothing on a bar."""
        if self.plain and self.done > self.start and self.done != self._shown:
            self._line()

    def _line(self) -> None:
        with self._lock:  # the step loop's lines and the timer's, one at a time
            now = time.perf_counter()
            self._last_line, self._shown = now, self.done
            elapsed = now - self._t0
            rate = (self.done - self.start) / elapsed if elapsed > 0 else 0.0
            eta = clock((self.total - self.done) / rate) if rate > 0 else "?"
            figures = "".join(f"{k} {v}  " for k, v in self.figures.items())
            waiting = now - self._last_step
            running = "" if waiting < max(self.every, 1.0) or self.done >= self.total else (
                f"  ({self.unit} {self.done + 1} running for {clock(waiting)})" if self.unit
                else f"  (no progress for {clock(waiting)})")
            text = (f"{self.label} {self.done}/{self.total}  {figures}elapsed {clock(elapsed)}"
                    f"  eta {eta}{running}")
            if text != self._text:  # a line the same as the last says nothing new
                self._text = text
                self.console.print(text, highlight=False, soft_wrap=True)
