"""Fold throughput: booking-etl's vectorized fold vs. a plain per-row Python fold, same input.

Run: ``make bench`` (or ``.venv/bin/python bench/fold_bench.py --rows 1000000 5000000 10000000``).
Each measurement runs in a fresh subprocess so peak RSS belongs to it alone: the first call is a
cold one (new memory), then the median of three. The input's size is that of its Arrow buffers
(the frame's columns are Arrow-backed). The peak is the process's resident peak during the fold
(input and interpreter included; reading the Parquet file is not counted where Linux lets the
peak be reset); "fold's own" is that peak minus the RSS before the fold. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa


def make_bookings(rows: int, machines: int = 200, seed: int = 7) -> pd.DataFrame:
    """Realistic-ish bookings: per machine a sequence of orders with pause/resume and noise."""
    rng = np.random.default_rng(seed)
    machine = rng.integers(0, machines, rows)
    # time advances per machine; ~3 events per run, several runs per order
    step = rng.integers(60, 3 * 3600, rows).astype("int64")
    order = np.argsort(machine, kind="stable")
    t = np.empty(rows, dtype="int64")
    cum = np.cumsum(step[order])
    first = np.r_[0, np.flatnonzero(np.diff(machine[order])) + 1]
    base = np.repeat(cum[first] - step[order][first], np.diff(np.r_[first, rows]))
    t[order] = cum - base
    seq = np.empty(rows, dtype="int64")
    seq[order] = np.arange(rows) - np.repeat(first, np.diff(np.r_[first, rows]))
    order_no = seq // 6  # an order spans ~6 events on its machine
    kind = np.where(seq % 2 == 0, "START", "END")
    noise = rng.random(rows)
    kind = np.where(noise < 0.01, "START", kind)  # duplicates
    kind = np.where(noise > 0.99, "END", kind)  # orphans
    start = np.datetime64("2024-01-01T00:00:00", "us").astype("int64")
    return pd.DataFrame(
        {
            "ts": pd.Series((start + t * 1_000_000).view("datetime64[us]")).dt.tz_localize("UTC"),
            "machine_code": pd.Series(
                [f"M-{m:03d}" for m in range(machines)], dtype="string"
            ).to_numpy()[machine],
            "order_code": pd.Series(
                (4_000_000 + order_no * machines + machine).astype(str), dtype="string"
            ),
            "product_code": pd.Series((order_no % 50).astype(str), dtype="string"),
            "event": pd.Series(kind, dtype="string"),
        }
    ).astype({"machine_code": "string"})


def plain_python_fold(frame: pd.DataFrame) -> int:
    """The per-row loop a developer would write first (same rules as the default 'overlap' policy)."""
    rows = sorted(
        zip(
            frame["machine_code"].tolist(),
            frame["order_code"].tolist(),
            frame["ts"].tolist(),
            (frame["event"] == "START").tolist(),
            frame["product_code"].tolist(),
            strict=True,
        ),
        key=lambda r: (r[0], r[1], r[2], r[3]),
    )
    runs = 0
    open_run: dict[tuple[str, str], object] = {}
    for machine, order, ts, is_start, _product in rows:
        key = (machine, order)
        if is_start:
            if key not in open_run:
                open_run[key] = ts
                runs += 1
        elif key in open_run:
            del open_run[key]
    return runs


def measure(kind: str, rows: int, path: str) -> dict[str, object]:
    frame = pd.read_parquet(path)  # generated once by the parent: this process's peak is the fold's
    arrow_bytes = int(pa.Table.from_pandas(frame, preserve_index=False).nbytes)
    from etl.pipeline.fold import fold
    from etl.shapes import FoldPolicy

    with open("/proc/self/statm") as handle:
        before = int(handle.read().split()[1]) * resource.getpagesize()
    peak_reset = _reset_peak()  # reading the input peaks higher than a small fold
    timings = []
    for _ in range(1 if kind == "plain" else 3):  # the per-row loop is slow enough once
        t0 = time.perf_counter()
        if kind == "plain":
            runs = plain_python_fold(frame)
        else:
            policy = FoldPolicy(on_new_order="overlap") if kind == "etl-overlap" else FoldPolicy()
            runs = len(fold(frame, policy=policy).runs)
        timings.append(time.perf_counter() - t0)
    seconds = sorted(timings)[len(timings) // 2]  # the median
    first = timings[0]
    peak = _peak() if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "kind": kind,
        "rows": rows,
        "seconds": seconds,
        "first": first,
        "runs": runs,
        "peak_rss": peak,
        "rss_before": before,
        "input_bytes": arrow_bytes,
    }


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _peak() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.one[2])))
        return
    print(
        f"machine: {platform.machine()}, {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}"
    )
    print(
        "| fold | bookings | first call s | bookings/s (first) | median of 3 s | bookings/s (median) "
        "| runs | RSS before | peak RSS | input (Arrow) | peak / input | fold's own / input |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        data = Path(tempfile.mkdtemp()) / f"bookings-{rows}.parquet"
        make_bookings(rows).to_parquet(data)
        for kind in ("etl-close", "etl-overlap", "plain"):
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind, str(rows), str(data)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout)
            print(
                f"| {r['kind']} | {r['rows']:,} | {r['first']:.2f} | {r['rows'] / r['first']:,.0f} "
                f"| {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} | {r['runs']:,} "
                f"| {r['rss_before'] / 2**20:,.0f} MiB | {r['peak_rss'] / 2**20:,.0f} MiB "
                f"| {r['input_bytes'] / 2**20:,.0f} MiB | {r['peak_rss'] / r['input_bytes']:.1f}x "
                f"| {(r['peak_rss'] - r['rss_before']) / r['input_bytes']:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
