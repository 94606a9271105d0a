"""Progress of long runs: a live line on a terminal (a real pty), plain periodic lines otherwise."""

from __future__ import annotations

import io
import os
import pty
import subprocess
from pathlib import Path

from etl.ops.progress import RowProgress
from tests.support.daemon import ETL
from tests.support.plant import Plant


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_period_when_not_a_terminal() -> None:
    clock, out = Clock(), io.StringIO()
    progress = RowProgress("bookings", out, tty=False, every=30, clock=clock)
    for rows in (50_000, 100_000):  # the first 30 seconds: nothing
        clock.now += 10
        progress(rows)
    assert out.getvalue() == ""
    clock.now += 15
    progress(150_000)
    clock.now += 5
    progress(200_000)
    progress.close()
    assert out.getvalue() == "bookings: 150,000 rows read (4,286 rows/s, 35s)\n"


def test_a_live_line_on_a_terminal_that_close_erases() -> None:
    clock, out = Clock(), io.StringIO()
    progress = RowProgress("orders", out, tty=True, clock=clock)
    progress(500)  # drawn at once
    clock.now += 0.1
    progress(1_000)  # too soon to redraw
    clock.now += 0.2
    progress(2_000)
    progress.close()
    assert out.getvalue() == (
        "\r/ orders: 500 rows read (0s)\x1b[K"
        "\r- orders: 2,000 rows read (6,667 rows/s, 0s)\x1b[K"
        "\r\x1b[K"
    )


def test_etl_run_draws_progress_on_a_real_terminal(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.book("M1", "A", 30, plant.ago(hours=4))
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [ETL, "-p", str(plant.root), "run", "bookings"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=60,
            text=True,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    terminal = b"".join(chunks).decode()
    assert done.returncode == 0
    assert "\r/ bookings: 2 rows read (" in terminal and "\r\x1b[K" in terminal
    assert "INFO etl.runs: bookings: window" in terminal  # the summary log line follows
    assert "\r" not in done.stdout and done.stdout.startswith("bookings: ")
