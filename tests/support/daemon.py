"""Real ``etl`` processes for tests: the scheduler daemon under signals, and bounded waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ETL = str(Path(sys.executable).parent / "etl")


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Daemon:
    """``etl -p ROOT [OPTIONS] schedule [ARGS]`` as a child process, its stderr in a log file."""

    def __init__(
        self,
        root: Path,
        *args: str,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        name: str = "daemon",
    ) -> None:
        self.log_path = root.parent / f"{name}.log"
        self.out_path = root.parent / f"{name}.out"
        environ = {**os.environ, "ETL_CRON_SECONDS": "1", **(env or {})}
        with self.log_path.open("w") as err, self.out_path.open("w") as out:
            self.process = subprocess.Popen(
                [ETL, "-p", str(root), *options, "schedule", *args],
                stdout=out,
                stderr=err,
                env=environ,
            )

    def log(self) -> str:
        """What the daemon logged so far."""
        return self.log_path.read_text()

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> None:
        """Wait until ``text`` occurs ``count`` times in the log (fail if the daemon dies)."""

        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.process.returncode} waiting for {text!r}:\n"
                    + self.log()
                )
            return self.log().count(text) >= count

        wait_for(seen, timeout, f"{text!r} x{count} in the daemon's log")

    def send(self, sig: signal.Signals) -> None:
        """Send a signal to the daemon."""
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status (the process is killed if it outlives ``timeout``)."""
        if self.process.poll() is None:
            self.send(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()}") from None

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
