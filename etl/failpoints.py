"""Failpoints: named places where a test can freeze a real ``etl`` process to kill it there.

Set ``ETL_FAILPOINT=<name>`` (and optionally ``ETL_FAILPOINT_FILE=<path>``): when the process
reaches that point it creates the file and sleeps, so the test can ``kill -9`` it exactly there;
with ``ETL_FAILPOINT_RAISE=1`` it raises an OSError there instead (an I/O failure at that point).
Unset (always, in production), ``failpoint()`` costs one dictionary lookup.

Points: ``extract`` (after the first batch was read from the source), ``commit`` (after the
store commit, before Parquet is published), ``backfill_chunk`` (after a backfill chunk committed),
``upload`` (halfway through uploading a Parquet partition to object storage), ``write_parquet``
(a local partition's temporary file written, not yet renamed over the partition file),
``upgrade`` (a store's schema upgraded, its transaction not yet committed).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_fired: set[str] = set()


def failpoint(name: str) -> None:
    """Freeze here (the first time it is reached) if the environment asks for this failpoint."""
    if os.environ.get("ETL_FAILPOINT") != name or name in _fired:
        return
    _fired.add(name)
    marker = os.environ.get("ETL_FAILPOINT_FILE")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    if os.environ.get("ETL_FAILPOINT_RAISE") == "1":
        raise OSError(f"failpoint {name}: injected I/O failure")
    time.sleep(float(os.environ.get("ETL_FAILPOINT_SLEEP", "300")))
