"""File-drop and HTTP API throughput: what etl/sources/ adds to a run.

Run: ``.venv/bin/python bench/sources_bench.py [--rows 1000000] [--records 100000]
[--excel-rows 100000] [--groups files api excel]``; ``make bench BENCH_ARGS='--only files api
excel'`` runs it from bench/run_bench.py.

- file group: ROWS bookings as one ';'-separated CSV with DD.MM.YYYY times, read + mapped + folded
  by a job run's ``derive`` through the file-drop reader, against ``pyarrow.csv.read_csv`` of
  the same file alone (the floor: Arrow's reader with every column as text);
- API group: RECORDS booking records served as JSON pages of 1,000 by a threaded HTTP server on
  127.0.0.1 (bodies prepared before the clock starts), read + mapped + folded through the HTTP
  reader: pages and records per second;
- excel group: EXCEL_ROWS bookings (and a date-cell column) in one .xlsx sheet, read by the
  file-drop reader (calamine) against openpyxl's read-only cell values alone (what the reader used
  before), then read + mapped + folded; the same as a legacy .xls (BIFF8 holds 65,536 rows a
  sheet: at most 65,000 of them).

Median of three after a first run; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from etl.config.loader import load_project
from etl.pipeline.run import derive
from etl.sources.reader import Window

MAPPING = """\
structure: bookings
source: {table: BUCHUNGEN}
columns: {timestamp: ZEIT, order_code: AUFTRAG, machine_code: MASCHINE, event: ART}
events: {START: [10], END: [20]}
"""
START = datetime(2026, 11, 1)


def project(root: Path, connector: str) -> Path:
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text("defaults: {start_from: '2026-10-01'}\nparquet: null\n")
    (root / "connectors" / "plant.yaml").write_text(connector)
    (root / "mappings" / "bookings.yaml").write_text(MAPPING)
    (root / "jobs" / "bookings.yaml").write_text("connector: plant\nmapping: bookings\n")
    return root


def bookings(rows: int, machines: int = 200) -> dict[str, np.ndarray]:
    """START/END pairs per machine, a minute to an hour apart."""
    pairs = rows // 2
    rng = np.random.default_rng(7)
    machine = np.repeat(np.arange(pairs) % machines, 2)
    gaps = rng.integers(60, 3600, size=rows)
    order = np.argsort(machine, kind="stable")
    seconds = np.empty(rows, dtype=np.int64)
    seconds[order] = np.cumsum(gaps[order]) % (25 * 86400)
    stamps = np.datetime64(START, "s") + seconds.astype("timedelta64[s]")
    return {
        "MASCHINE": np.char.add("M", machine.astype(str)),
        "AUFTRAG": np.char.add("FA", (np.arange(rows) // 2).astype(str)),
        "ART": np.where(np.arange(rows) % 2 == 0, "10", "20"),
        "ZEIT": stamps,
    }


def timed(step: Callable[[], object]) -> float:
    step()  # the first, cold
    runs = []
    for _ in range(3):
        clock = time.perf_counter()
        step()
        runs.append(time.perf_counter() - clock)
    return statistics.median(runs)


def window() -> Window:
    return Window(lo=datetime(2026, 10, 1, tzinfo=UTC), hi=datetime(2026, 12, 31, tzinfo=UTC))


def file_group(work: Path, rows: int) -> list[str]:
    cols = bookings(rows)
    text = np.datetime_as_string(cols["ZEIT"], unit="m")  # 2026-11-01T00:17
    german = np.array([f"{t[8:10]}.{t[5:7]}.{t[0:4]} {t[11:16]}" for t in text])  # DD.MM.YYYY HH:MM
    table = pa.table(
        {
            "MASCHINE": cols["MASCHINE"],
            "AUFTRAG": cols["AUFTRAG"],
            "ART": cols["ART"],
            "ZEIT": german,
        }
    )
    root = project(
        work / "files",
        "kind: files\ntimezone: Europe/Berlin\nfiles:\n  location: drop\n  settle: 0s\n  tables:\n"
        "    BUCHUNGEN: {glob: '*.csv', delimiter: ';', datetime_format: '%d.%m.%Y %H:%M'}\n",
    )
    (root / "drop").mkdir(exist_ok=True)
    path = root / "drop" / "export.csv"
    pacsv.write_csv(table, path, pacsv.WriteOptions(delimiter=";", quoting_style="none"))
    size = path.stat().st_size
    loaded = load_project(root)
    job = loaded.job("bookings")

    def arrow_alone() -> object:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=";"),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(table.column_names, pa.string())
            ),
        )

    def run() -> object:
        derived = derive(loaded, job, lambda _now: window(), None)
        assert derived.rows_read == rows, derived.rows_read
        return derived

    floor, full = timed(arrow_alone), timed(run)
    return [
        f"| file: pyarrow.csv alone | {rows:,} rows, {size / 2**20:.0f} MiB | {floor:.2f} s | {rows / floor:,.0f} rows/s |",
        f"| file: read + map + fold (etl) | {rows:,} rows | {full:.2f} s | {rows / full:,.0f} rows/s |",
    ]


def api_group(work: Path, records: int, page: int = 1000) -> list[str]:
    cols = bookings(records)
    instants = (cols["ZEIT"].astype("datetime64[s]").astype(np.int64) * 1000).tolist()
    rows = [
        {"MASCHINE": m, "AUFTRAG": o, "ART": int(a), "ZEIT": t}
        for m, o, a, t in zip(
            cols["MASCHINE"].tolist(),
            cols["AUFTRAG"].tolist(),
            cols["ART"].tolist(),
            instants,
            strict=True,
        )
    ]
    bodies = []
    for start in range(0, records + 1, page):
        body: dict[str, object] = {"value": rows[start : start + page]}
        if start + page < records:
            body["@odata.nextLink"] = f"Bookings?$skiptoken={start + page}"
        bodies.append(json.dumps(body).encode())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            data = bodies[int(query.get("$skiptoken", ["0"])[0]) // page]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = project(
            work / "api",
            f"kind: http\ntimezone: Europe/Berlin\nhttp:\n  base_url: http://127.0.0.1:{server.server_address[1]}\n"
            f"  endpoints:\n    BUCHUNGEN: {{path: Bookings, odata: 4, paging: {{size: {page}}}, max_pages: 100000}}\n",
        )
        loaded = load_project(root)
        job = loaded.job("bookings")

        def run() -> object:
            derived = derive(loaded, job, lambda _now: window(), None)
            assert derived.rows_read == records, derived.rows_read
            return derived

        full = timed(run)
    finally:
        server.shutdown()
        server.server_close()
    pages = -(-records // page) + 1  # and the clock's request
    return [
        f"| API: OData v4 pages of {page:,}, read + map + fold | {records:,} records | {full:.2f} s | "
        f"{pages / full:,.0f} pages/s, {records / full:,.0f} records/s |"
    ]


def excel_group(work: Path, rows: int) -> list[str]:
    import io

    import openpyxl
    import xlwt

    from etl.sources.files.formats import read_file
    from etl.sources.files.spec import FileTable

    cols = bookings(rows)
    stamps = cols["ZEIT"].astype("datetime64[s]").tolist()
    data = list(
        zip(
            cols["MASCHINE"].tolist(),
            cols["AUFTRAG"].tolist(),
            [int(a) for a in cols["ART"].tolist()],
            stamps,
            strict=True,
        )
    )
    header = ["MASCHINE", "AUFTRAG", "ART", "ZEIT"]
    root = project(
        work / "excel",
        "kind: files\ntimezone: Europe/Berlin\nfiles:\n  location: drop\n  settle: 0s\n  tables:\n"
        "    BUCHUNGEN: {glob: '*.xlsx'}\n",
    )
    (root / "drop").mkdir(exist_ok=True)
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Buchungen")
    sheet.append(header)
    for row in data:
        sheet.append(row)
    xlsx = root / "drop" / "export.xlsx"
    book.save(xlsx)
    legacy = xlwt.Workbook()
    stamp = xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM:SS")
    page = legacy.add_sheet("Buchungen")
    short = min(rows, 65_000)
    for c, name in enumerate(header):
        page.write(0, c, name)
    for r, row in enumerate(data[:short], start=1):
        for c, value in enumerate(row):
            page.write(r, c, value, stamp) if c == 3 else page.write(r, c, value)
    xls = work / "export.xls"
    legacy.save(str(xls))
    loaded = load_project(root)
    job = loaded.job("bookings")
    table = FileTable(glob="*")

    def openpyxl_alone() -> object:
        book = openpyxl.load_workbook(io.BytesIO(xlsx.read_bytes()), read_only=True, data_only=True)
        values = list(book["Buchungen"].iter_rows(values_only=True))
        book.close()
        return values

    def reader(path: Path) -> Callable[[], object]:
        return lambda: read_file(path.read_bytes(), path.name, table, header, ["ZEIT"])

    def run() -> object:
        derived = derive(loaded, job, lambda _now: window(), None)
        assert derived.rows_read == rows, derived.rows_read
        return derived

    alone, calamine, full, old = (
        timed(openpyxl_alone),
        timed(reader(xlsx)),
        timed(run),
        timed(reader(xls)),
    )
    size, old_size = xlsx.stat().st_size / 2**20, xls.stat().st_size / 2**20
    return [
        f"| .xlsx: openpyxl read-only values alone | {rows:,} rows, {size:.1f} MiB | {alone:.2f} s | {rows / alone:,.0f} rows/s |",
        f"| .xlsx: file-drop reader (calamine) | {rows:,} rows | {calamine:.2f} s | {rows / calamine:,.0f} rows/s |",
        f"| .xlsx: read + map + fold (etl) | {rows:,} rows | {full:.2f} s | {rows / full:,.0f} rows/s |",
        f"| .xls: file-drop reader (calamine) | {short:,} rows, {old_size:.1f} MiB | {old:.2f} s | {short / old:,.0f} rows/s |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--excel-rows", type=int, default=100_000)
    parser.add_argument(
        "--groups",
        nargs="+",
        choices=["files", "api", "excel"],
        default=["files", "api", "excel"],
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["| what | input | median | rate |", "|---|---|---|---|"]
        if "files" in args.groups:
            lines += file_group(Path(tmp), args.rows)
        if "api" in args.groups:
            lines += api_group(Path(tmp), args.records)
        if "excel" in args.groups:
            lines += excel_group(Path(tmp), args.excel_rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
