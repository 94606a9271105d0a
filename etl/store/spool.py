"""Anomalies on their way to the store, held in batches: a run's memory is bounded by its batch
size, not by how many anomalies it finds.

A run finds anomalies batch by batch while it reads (the mapping's) and at its end (the fold's),
and commits them after the fold. Up to ``limit`` of them wait in memory; beyond that each full
batch goes to a temporary file (in TMPDIR) as an Arrow IPC stream (compact: no Python object per
value) and is read back one batch at a time by the commit, which inserts it batch by batch.
A window with fewer anomalies than a batch never touches the disk.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import IO

import pandas as pd
import pyarrow as pa

from etl.shapes import STORED_ANOMALY_COLUMNS, empty_anomalies
from etl.store.bulk import stamp_array, text_array

SCHEMA = pa.schema(
    [
        pa.field(name, pa.timestamp("us", tz="UTC") if name == "ts" else pa.string())
        for name in STORED_ANOMALY_COLUMNS
    ]
)
_STRINGS = {pa.string(): pd.StringDtype()}


class AnomalySpool:
    """The anomalies of one window, in batches of at most ``limit`` (see the module docstring).

    ``add`` frames with the stored anomaly columns, then read them with ``batches`` (as often
    as needed); ``close`` removes the temporary file (also when the spool is collected)."""

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = max(1, limit)
        self.kinds: Counter[str] = Counter()
        self.spilled = 0  # batches written to the temporary file
        self._count = 0
        self._held: list[pd.DataFrame] = []
        self._held_rows = 0
        self._file: IO[bytes] | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._sealed = False

    @classmethod
    def of(cls, frame: pd.DataFrame, limit: int = 50_000) -> AnomalySpool:
        """A spool holding ``frame``."""
        spool = cls(limit)
        spool.add(frame)
        return spool

    def __len__(self) -> int:
        return self._count

    def add(self, frame: pd.DataFrame) -> None:
        """Append anomalies (``STORED_ANOMALY_COLUMNS``); a full batch goes to the disk."""
        if frame.empty:
            return
        if self._sealed:
            raise RuntimeError("anomalies added after they were read")
        frame = frame.reindex(columns=STORED_ANOMALY_COLUMNS)
        self._count += len(frame)
        self.kinds.update(frame["kind"].astype(str).tolist())
        for start in range(0, len(frame), self.limit):
            piece = frame.iloc[start : start + self.limit]
            self._held.append(piece)
            self._held_rows += len(piece)
            if self._held_rows >= self.limit:
                self._spill()

    def _spill(self, everything: bool = False) -> None:
        """Write the full batches held (``everything``: all of them) to the temporary file."""
        held = pd.concat(self._held, ignore_index=True) if len(self._held) > 1 else self._held[0]
        cut = len(held) if everything else len(held) // self.limit * self.limit
        held, rest = held.iloc[:cut], held.iloc[cut:]
        self._held, self._held_rows = ([rest], len(rest)) if len(rest) else ([], 0)
        if self._writer is None:
            self._file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by close())
                prefix="etl-anomalies-", suffix=".arrows"
            )
            self._writer = pa.ipc.new_stream(self._file, SCHEMA)
        table = _arrow(held).combine_chunks()
        self._writer.write_table(table, max_chunksize=self.limit)
        self.spilled += -(-len(held) // self.limit)

    def batches(self) -> Iterator[pd.DataFrame]:
        """The anomalies in the order added, as frames of at most ``limit`` rows (text as
        pandas strings, ``ts`` as UTC microseconds). Nothing can be added afterwards."""
        if self._writer is not None and not self._sealed:
            if self._held:
                self._spill(everything=True)
            self._writer.close()
            assert self._file is not None
            self._file.flush()
        self._sealed = True
        if self._file is not None:
            with pa.OSFile(self._file.name) as source:
                for batch in pa.ipc.open_stream(source):
                    yield batch.to_pandas(types_mapper=_STRINGS.get)
        if self._held:  # fewer than ``limit``: never spilled
            yield pd.concat(self._held, ignore_index=True)

    def frame(self) -> pd.DataFrame:
        """All of them as one frame (``etl preview``, tests: not for a run's commit)."""
        frames = list(self.batches())
        if not frames:
            return empty_anomalies().reindex(columns=STORED_ANOMALY_COLUMNS)
        return pd.concat(frames, ignore_index=True)

    def close(self) -> None:
        """Remove the temporary file (if any)."""
        if self._file is not None:
            self._file.close()  # a NamedTemporaryFile: removed as it closes
            self._file = None

    def __del__(self) -> None:
        self.close()


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as a table of ``SCHEMA``."""
    arrays = [
        stamp_array(frame[name]) if name == "ts" else text_array(frame[name])
        for name in STORED_ANOMALY_COLUMNS
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
