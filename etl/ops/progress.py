"""Progress of long work on stderr: a live line on a terminal, plain periodic lines otherwise.

The core reports how many rows it has read through a callback (``run.run_job(..., progress=)``);
this module turns that into output, so the core never prints. The row count of a window is not
known before it has been read, so the terminal line is a live counter with rate and elapsed time
rather than a bar with a percentage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_SPINNER = "|/-\\"


class RowProgress:
    """Callable ``progress(rows_read_so_far)`` that reports on ``stream``.

    On a terminal the line is drawn at the first batch, redrawn in place at most every ``every``
    seconds (default 0.2) and erased by :meth:`close`; otherwise a plain line is written every
    ``every`` seconds (default 30), so a cron mail or a log file gets a few lines for a long run
    and none for a short one.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        *,
        tty: bool | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream
        self.tty = _isatty(stream) if tty is None else tty
        self.every = every if every is not None else (0.2 if self.tty else 30.0)
        self.clock = clock
        self.started = self._last = clock()
        self.rows = 0
        self.updates = 0
        self._drawn = False

    def __call__(self, rows: int) -> None:
        self.rows = rows
        now = self.clock()
        first_draw = self.tty and self.updates == 0
        if not first_draw and now - self._last < self.every:
            return
        self._last = now
        self.updates += 1
        line = self.line(now)
        if self.tty:
            spin = _SPINNER[self.updates % len(_SPINNER)]
            self.stream.write(f"\r{spin} {line}\x1b[K")
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """``bookings: 1,250,000 rows read (41,300 rows/s, 30s)``."""
        elapsed = (self.clock() if now is None else now) - self.started
        rate = f"{self.rows / elapsed:,.0f} rows/s, " if elapsed > 0 else ""
        return f"{self.label}: {self.rows:,} rows read ({rate}{elapsed:.0f}s)"

    def close(self) -> None:
        """Erase the live line (terminal) so the summary that follows starts on a clean line."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
