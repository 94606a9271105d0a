"""One dropped file's bytes -> a frame of the mapping's source columns (text, or datetimes for
the timestamp columns), or a DataError naming the file and the line."""

from __future__ import annotations

import codecs
import io
import json
import struct
from collections.abc import Sequence
from datetime import date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from etl.errors import DataError
from etl.sources.files.spec import FileTable

_BOM = codecs.BOM_UTF8


def read_file(
    content: bytes, name: str, table: FileTable, wanted: list[str] | None, times: list[str]
) -> pd.DataFrame:
    """The rows of one file: ``wanted`` columns (None: every column, for ``etl discover``),
    ``times`` among them parsed by the table's ``datetime_format`` (or left to the mapping);
    DataError for a file that does not read."""
    kind = table.format_of(name)
    if kind in ("xlsx", "xls"):
        frame = _excel(content, name, kind, table, wanted, times)
    elif kind == "jsonl":
        frame = _jsonl(content, name, wanted)
    else:
        frame = _csv(content, name, table, wanted)
    if table.footer_rows and kind != "csv":
        frame = frame.iloc[: max(0, len(frame) - table.footer_rows)]
    for column in times:
        frame[column] = datetimes(frame[column], table.datetime_format)
    return frame


# --------------------------------------------------------------------------- CSV / TSV


def _csv(content: bytes, name: str, table: FileTable, wanted: list[str] | None) -> pd.DataFrame:
    if content.startswith(_BOM):
        content = content[len(_BOM) :]  # Excel's UTF-8 export; meaningless in any other encoding
    if table.footer_rows:
        content = _drop_last_lines(content, table.footer_rows)
    if not content.strip():
        raise DataError(f"{name}: line 1: the file is empty (no header line)")
    delimiter = table.delimiter_of(name)
    header_line = table.skip_rows + 1
    encoding = "utf8" if codecs.lookup(table.encoding).name == "utf-8" else table.encoding
    if wanted is None:
        wanted = _header(content, name, table, delimiter)
    try:
        result = pacsv.read_csv(
            io.BytesIO(content),
            read_options=pacsv.ReadOptions(encoding=encoding, skip_rows=table.skip_rows),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=table.quote, newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types=dict.fromkeys(wanted, pa.string()),
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise _csv_error(content, name, table, wanted, header_line, exc) from None
    frame = result.to_pandas(types_mapper=lambda t: pd.StringDtype() if t == pa.string() else None)
    if table.decimal == ",":
        for column in frame.columns:
            frame[column] = _decimal_comma(frame[column])
    return frame


def _header(content: bytes, name: str, table: FileTable, delimiter: str) -> list[str]:
    """The named columns of the header line (each once)."""
    import csv

    lines = content.split(b"\n", table.skip_rows + 1)
    if len(lines) <= table.skip_rows:
        raise DataError(f"{name}: no header line")
    try:
        line = lines[table.skip_rows].decode(table.encoding)
    except UnicodeDecodeError:
        raise DataError(
            f"{name}: line {table.skip_rows + 1}: not valid {table.encoding} text",
            hint="declare the file's 'encoding' in the connector (cp1252, latin-1, utf-8)",
        ) from None
    names = next(csv.reader([line.rstrip("\r")], delimiter=delimiter, quotechar=table.quote), [])
    return list(dict.fromkeys(n for n in names if n))


def _drop_last_lines(content: bytes, count: int) -> bytes:
    lines = content.rstrip(b"\r\n").split(b"\n")
    return b"\n".join(lines[: max(0, len(lines) - count)]) + b"\n"


def _csv_error(
    content: bytes,
    name: str,
    table: FileTable,
    wanted: list[str],
    header_line: int,
    exc: Exception,
) -> DataError:
    """Say which line is wrong (only on failure: the bytes are walked line by line here)."""
    import csv

    text = str(exc).strip().splitlines()[0]
    lines = content.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if number <= table.skip_rows:
            continue
        try:
            raw.decode(table.encoding)
        except UnicodeDecodeError:
            return DataError(
                f"{name}: line {number}: not valid {table.encoding} text",
                hint="declare the file's 'encoding' in the connector (cp1252, latin-1, utf-8)",
            )
    decoded = content.decode(table.encoding)
    rows = list(csv.reader(io.StringIO(decoded), delimiter=table.delimiter_of(name)))
    rows = rows[table.skip_rows :]
    if not rows:
        return DataError(f"{name}: no header line")
    header = rows[0]
    missing = [c for c in wanted if c not in header]
    if missing:
        return DataError(
            f"{name}: line {header_line}: column(s) {', '.join(map(repr, missing))} not in the "
            f"header (columns: {', '.join(header)})",
            hint="check 'delimiter' and 'skip_rows' in the connector, or the mapping's columns",
        )
    for offset, row in enumerate(rows[1:], start=1):
        if row and len(row) != len(header):
            return DataError(
                f"{name}: line {header_line + offset}: {len(row)} fields, the header has "
                f"{len(header)}",
                hint="a truncated or hand-edited file; a totals line is dropped with 'footer_rows'",
            )
    return DataError(f"{name}: cannot read as CSV: {text}")


def _decimal_comma(column: pd.Series) -> pd.Series:
    """``'10,00'`` -> ``'10'``, ``'2,5'`` -> ``'2.5'`` (numbers written with a decimal comma)."""
    text = column.astype("string")
    text = text.str.replace(r"^(-?\d+),0+$", r"\1", regex=True)
    return text.str.replace(r"^(-?\d+),(\d+)$", r"\1.\2", regex=True)


# --------------------------------------------------------------------------- Excel

# the 1900 date system: serial 1 is 1900-01-01 and 60 the 1900-02-29 that never was (Lotus'
# leap-year bug kept by Excel); from 61 on serial n is 1899-12-30 + n days
_EXCEL_EPOCH = np.datetime64("1899-12-30T00:00:00", "us")
_DAY_US = 86_400_000_000


def _excel(
    content: bytes,
    name: str,
    kind: str,
    table: FileTable,
    wanted: list[str] | None,
    times: list[str],
) -> pd.DataFrame:
    """A sheet of an .xlsx/.xlsm or legacy .xls workbook (``kind``), read by calamine (Rust)."""
    title, rows = _sheet_rows(content, name, kind, table)
    if len(rows) < table.header_row:
        raise DataError(f"{name}: sheet {title!r}: no header in row {table.header_row}")
    header = rows[table.header_row - 1]
    names = ["" if h is None or h == "" else str(_cell(h)).strip() for h in header]
    if wanted is None:
        wanted = list(dict.fromkeys(n for n in names if n))
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            f"{name}: sheet {title!r} row {table.header_row}: column(s) "
            f"{', '.join(map(repr, missing))} not in the header (columns: "
            f"{', '.join(n for n in names if n)})",
            hint="check 'sheet' and 'header_row' in the connector, or the mapping's columns",
        )
    positions = [names.index(c) for c in wanted]
    values: list[list[object]] = [[] for _ in wanted]
    for row in rows[table.header_row :]:
        picked = [_cell(row[p]) if p < len(row) else None for p in positions]
        if all(v is None for v in picked):
            continue
        for i, value in enumerate(picked):
            values[i].append(value)
    frame = pd.DataFrame(
        {c: pd.Series(v, dtype=object) for c, v in zip(wanted, values, strict=True)}
    )
    for column in times:
        frame[column] = _excel_times(frame[column])
    return frame


def _sheet_rows(
    content: bytes, name: str, kind: str, table: FileTable
) -> tuple[str, Sequence[Sequence[object]]]:
    """The declared sheet's title and its rows from row 1 on (leading empty rows kept, so that
    ``header_row`` counts as in Excel); DataError naming the file for a workbook that does not
    read (truncated, not a workbook, no such sheet)."""
    from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum

    hint = "a truncated or damaged file, or another format: export it again"
    if content.startswith(_CFB_MAGIC) and (problem := _cfb_problem(content)):
        raise DataError(f"{name}: not a readable .{kind} workbook ({problem})", hint=hint)
    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(content))
    except CalamineError as exc:
        raise DataError(f"{name}: not a readable .{kind} workbook ({exc})", hint=hint) from None
    except BaseException as exc:  # a Rust panic on a damaged file (pyo3's PanicException)
        if type(exc).__name__ != "PanicException":
            raise
        raise DataError(
            f"{name}: not a readable .{kind} workbook (damaged: {exc})", hint=hint
        ) from None
    try:
        sheets = [m.name for m in book.sheets_metadata if m.typ == SheetTypeEnum.WorkSheet]
        if isinstance(table.sheet, int):
            if table.sheet >= len(sheets):
                raise DataError(
                    f"{name}: no sheet number {table.sheet} (sheets: {', '.join(sheets)})"
                )
            title = sheets[table.sheet]
        elif table.sheet in sheets:
            title = table.sheet
        else:
            raise DataError(f"{name}: no sheet {table.sheet!r} (sheets: {', '.join(sheets)})")
        try:
            rows = book.get_sheet_by_name(title).to_python(skip_empty_area=False)
        except CalamineError as exc:
            raise DataError(f"{name}: sheet {title!r}: cannot read ({exc})") from None
    finally:
        book.close()
    return title, rows


def _cell(value: object) -> object:
    """A calamine cell as openpyxl gave it: an empty cell None, a whole number an int (calamine
    gives floats for the numbers of .xlsx), a date cell a datetime (calamine gives a date for a
    date format, and for a datetime at midnight)."""
    if value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value


# an OLE2 compound file (.xls); what calamine does not check itself on a truncated one: it
# panics on a directory, FAT or DIFAT sector cut short
_CFB_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
_FREE_SECTOR = -1


def _cfb_problem(content: bytes) -> str | None:
    """Why the compound file's header or FAT point past its end (a truncated .xls), or None."""
    if len(content) < 512:
        return f"truncated: {len(content)} bytes, shorter than its 512-byte header"
    shift = int.from_bytes(content[30:32], "little")
    if shift not in (9, 12):
        return f"sector size 2^{shift} in its header (expected 512 or 4096)"
    size = 1 << shift
    present = (len(content) - size) // size  # whole sectors after the header's
    fat_count, directory = struct.unpack_from("<iI", content, 44)
    difat = [s for s in struct.unpack_from("<109i", content, 76) if s >= 0][:fat_count]
    if directory >= present or any(s >= present for s in difat):
        return f"truncated: {len(content)} bytes, its header points past the end"
    fat = np.concatenate(
        [np.frombuffer(content, "<i4", size // 4, (s + 1) * size) for s in difat]
        or [np.empty(0, "<i4")]
    )
    # a sector in use that is not in the file, or a chain that leads past the end
    if (fat[present:] != _FREE_SECTOR).any() or (fat[:present] >= present).any():
        return f"truncated: {len(content)} bytes, its sectors run past the end"
    return None


def _excel_times(column: pd.Series) -> pd.Series:
    """Datetime cells as they are, serial numbers in the 1900 system as datetimes (the phantom
    1900-02-29 is no date: NaT, an anomaly), text left to the mapping."""
    numeric = column.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool))
    if not numeric.any():
        return column
    serial = pd.to_numeric(column.where(numeric), errors="coerce").to_numpy(dtype="float64")
    shifted = np.where(serial < 60, serial + 1, serial)
    micros = np.round(shifted * (_DAY_US // 1000)) * 1000  # Excel keeps milliseconds at most
    ok = np.isfinite(micros) & (serial != 60) & (serial >= 1) & (serial < 2_958_466)
    stamps = _EXCEL_EPOCH + np.where(ok, micros, 0).astype("timedelta64[us]")
    out = column.copy()
    out[numeric] = pd.Series(stamps, index=column.index).where(ok)[numeric]
    return out


# --------------------------------------------------------------------------- JSON lines


def _jsonl(content: bytes, name: str, wanted: list[str] | None) -> pd.DataFrame:
    if content.startswith(_BOM):
        content = content[len(_BOM) :]
    if not content.strip():
        raise DataError(f"{name}: line 1: the file is empty")
    try:
        table = pajson.read_json(io.BytesIO(content))
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table = table.flatten()
        frame = table.to_pandas()
    except pa.ArrowInvalid:
        records = []
        for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{name}: line {number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{name}: line {number}: expected a JSON object per line") from None
            records.append(record)
        frame = pd.json_normalize(records, sep=".")  # types that change between lines
    if wanted is None:
        return frame
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"{name}: field(s) {', '.join(map(repr, missing))} in no record (fields: "
            f"{', '.join(map(str, frame.columns))})"
        )
    return frame[wanted]


# --------------------------------------------------------------------------- timestamps


def datetimes(column: pd.Series, formats: str | list[str] | None) -> pd.Series:
    """Text in the declared format(s) as wall-clock datetimes (what does not parse stays NaT,
    an anomaly the mapping reports); without a format the column is left to the mapping."""
    if formats is None or pd.api.types.is_datetime64_any_dtype(column):
        return column
    out = pd.Series(pd.NaT, index=column.index, dtype="datetime64[us]")
    typed = pd.Series(False, index=column.index)
    if column.dtype == object:  # Excel: datetime cells among text cells
        typed = column.map(lambda v: isinstance(v, datetime)).astype(bool)
        if typed.any():
            out[typed] = pd.to_datetime(column[typed]).astype("datetime64[us]")
    text = column.where(~typed).astype("string").str.strip()
    for fmt in [formats] if isinstance(formats, str) else formats:
        todo = out.isna() & text.notna()
        if not todo.any():
            break
        out[todo] = _strptime(text[todo], fmt)
    return out


def _strptime(text: pd.Series, fmt: str) -> pd.Series:
    """Arrow's strptime (C++, 9x pandas' on 1M values), pandas' for what Arrow cannot parse
    with ``fmt`` (a directive it lacks); values that do not fit the format are NaT."""
    import pyarrow.compute as pc

    try:
        parsed = pc.strptime(pa.array(text.array), format=fmt, unit="us", error_is_null=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_datetime(text, format=fmt, errors="coerce")
    values = parsed.to_numpy(zero_copy_only=False).astype("datetime64[us]")
    return pd.Series(values, index=text.index)
