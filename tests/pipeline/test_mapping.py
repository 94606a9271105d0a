"""etl.pipeline.mapping: raw source rows -> canonical bookings/runs, and every bad row -> an anomaly."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from etl.config.models import ColumnSpec, DstPolicy, MappingSpec
from etl.pipeline.mapping import (
    _localize_each,
    localize,
    map_bookings,
    map_orders,
    text_values,
    timestamps,
)
from etl.shapes import ANOMALY_COLUMNS, RUN_COLUMNS

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def bookings_mapping(columns: dict[str, Any] | None = None, **extra: Any) -> MappingSpec:
    """A bookings mapping; ``columns`` overrides the defaults (None drops a column)."""
    cols: dict[str, Any] = {
        "timestamp": "booked_at",
        "order_code": "order_no",
        "machine_code": "machine",
        "event": "event",
        "product_code": "article",
        **(columns or {}),
    }
    spec: dict[str, Any] = {
        "structure": "bookings",
        "source": {"table": "bookings"},
        "columns": {name: col for name, col in cols.items() if col is not None},
        "events": {"START": ["A"], "END": ["E"], "ignore": ["Q"]},
        **extra,
    }
    return MappingSpec.model_validate(spec)


def orders_mapping(columns: dict[str, Any] | None = None) -> MappingSpec:
    return MappingSpec.model_validate(
        {
            "structure": "orders",
            "source": {"table": "orders"},
            "columns": {
                "order_code": "order_no",
                "machine_code": "machine",
                "start": "started_at",
                "end": "finished_at",
                "product_code": "article",
                **(columns or {}),
            },
        }
    )


def booking_rows(n: int, **columns: list[Any]) -> pd.DataFrame:
    """Raw booking rows: sensible defaults for every column, overridden per test."""
    base: dict[str, list[Any]] = {
        "booked_at": [f"2024-03-04 06:{i:02d}:00" for i in range(n)],
        "order_no": ["4711"] * n,
        "machine": ["M-01"] * n,
        "event": ["A"] * n,
        "article": ["P-1"] * n,
    }
    base.update(columns)
    return pd.DataFrame(base)


def anomaly_kinds(anomalies: pd.DataFrame) -> list[str]:
    return anomalies["kind"].tolist()


def one_timestamp(frame: dict[str, list[Any]], spec: dict[str, Any], zone: ZoneInfo = UTC) -> Any:
    """The single mapped UTC instant of a one-row frame."""
    result = timestamps(pd.DataFrame(frame), ColumnSpec.model_validate(spec), zone, DstPolicy())
    assert str(result.dtype) == "datetime64[us, UTC]"
    assert len(result) == 1
    return result.iloc[0]


# --------------------------------------------------------------------------- codes as text


def test_integer_codes_become_text() -> None:
    assert text_values(pd.Series([10, 20, 7]), trim=True).tolist() == ["10", "20", "7"]


def test_whole_floats_lose_their_decimal_point_and_nan_is_na() -> None:
    out = text_values(pd.Series([10.0, 2.5, np.nan]), trim=True)
    assert out.tolist()[:2] == ["10", "2.5"]
    assert out.isna().tolist() == [False, False, True]


@pytest.mark.parametrize("dtype", ["float64", "Float64", "float64[pyarrow]"])
@pytest.mark.parametrize(
    "values", [[10.0, 20.0, None], [10.0, 2.5, None, float("inf"), -0.0]], ids=["whole", "mixed"]
)
def test_float_codes_read_the_same_in_every_float_dtype(dtype: str, values: list[Any]) -> None:
    out = text_values(pd.Series(values, dtype=dtype), trim=True)
    expected = ["10", "20", None] if len(values) == 3 else ["10", "2.5", None, "inf", "0"]
    assert out.astype(object).where(out.notna(), None).tolist() == expected
    assert out.dtype == "string"


def test_mixed_object_column_compares_as_one_code() -> None:
    out = text_values(pd.Series([10, "10", 10.0, " 10 ", None], dtype=object), trim=True)
    assert out.tolist()[:4] == ["10", "10", "10", "10"]
    assert pd.isna(out.iloc[4])


def test_blank_padding_is_trimmed() -> None:
    out = text_values(pd.Series([" M-01 ", "M-02    ", "\tM-03"]), trim=True)
    assert out.tolist() == ["M-01", "M-02", "M-03"]


def test_trim_false_keeps_padding() -> None:
    out = text_values(pd.Series([" M-01 ", "M-02    "]), trim=False)
    assert out.tolist() == [" M-01 ", "M-02    "]


def test_empty_and_blank_text_is_na() -> None:
    assert text_values(pd.Series(["", "   ", None, "x"]), trim=True).isna().tolist() == [
        True,
        True,
        True,
        False,
    ]
    # without trimming only the truly empty string is missing
    untrimmed = text_values(pd.Series(["", "   "]), trim=False)
    assert untrimmed.isna().tolist() == [True, False]


def test_trim_false_in_a_mapping_keeps_machine_padding() -> None:
    mapping = bookings_mapping({"machine_code": {"column": "machine", "trim": False}})
    mapped = map_bookings(booking_rows(1, machine=["M-01   "]), mapping, UTC)
    assert mapped.rows["machine_code"].tolist() == ["M-01   "]
    trimmed = map_bookings(booking_rows(1, machine=["M-01   "]), bookings_mapping(), UTC)
    assert trimmed.rows["machine_code"].tolist() == ["M-01"]


# --------------------------------------------------------------------------- event codes


def coded_mapping(start: list[Any], end: list[Any], ignore: list[Any]) -> MappingSpec:
    return bookings_mapping(events={"START": start, "END": end, "ignore": ignore})


@pytest.mark.parametrize(
    ("config", "source"),
    [
        pytest.param((10, 20, 30), [10, 20, 30, 10], id="int-config-int-column"),
        pytest.param((10, 20, 30), ["10", "20", " 30 ", "10"], id="int-config-text-column"),
        pytest.param(("10", "20", "30"), [10, 20, 30, 10], id="text-config-int-column"),
        pytest.param(("10", "20", "30"), [10.0, 20.0, 30.0, 10.0], id="text-config-float-column"),
    ],
)
def test_event_codes_map_to_start_end_and_ignore(
    config: tuple[Any, Any, Any], source: list[Any]
) -> None:
    start, end, ignore = config
    mapping = coded_mapping([start], [end], [ignore])
    mapped = map_bookings(booking_rows(4, event=source), mapping, UTC)
    # the ignored row is dropped without an anomaly
    assert mapped.rows["event"].tolist() == ["START", "END", "START"]
    assert mapped.rows["ts"].tolist() == [
        utc("2024-03-04 06:00"),
        utc("2024-03-04 06:01"),
        utc("2024-03-04 06:03"),
    ]
    assert mapped.anomalies.empty
    assert mapped.codes == {("10", "START"): 2, ("20", "END"): 1, ("30", "IGNORE"): 1}
    assert mapped.rows_read == 4


def test_sqlite_integer_column_with_nulls_arrives_as_float_and_still_matches() -> None:
    mapping = coded_mapping([10], [20], [])
    events = pd.Series([10.0, np.nan, 20.0])  # what pandas makes of INTEGER with a NULL
    mapped = map_bookings(booking_rows(3, event=events), mapping, UTC)
    assert mapped.rows["event"].tolist() == ["START", "END"]
    assert anomaly_kinds(mapped.anomalies) == ["unknown_event"]


def test_unknown_code_becomes_an_anomaly_naming_the_code() -> None:
    mapped = map_bookings(booking_rows(3, event=["A", "B10", "E"]), bookings_mapping(), BERLIN)
    assert mapped.rows["event"].tolist() == ["START", "END"]
    assert list(mapped.anomalies.columns) == ANOMALY_COLUMNS
    anomaly = mapped.anomalies.iloc[0]
    assert anomaly["kind"] == "unknown_event"
    assert "'B10'" in anomaly["detail"]
    assert anomaly["machine_code"] == "M-01"
    assert anomaly["order_code"] == "4711"
    assert anomaly["ts"] == utc("2024-03-04 05:01")  # 06:01 Berlin (CET)
    assert mapped.codes[("B10", "UNKNOWN")] == 1


def test_codes_are_case_sensitive() -> None:
    mapped = map_bookings(booking_rows(2, event=["a", "A"]), bookings_mapping(), UTC)
    assert mapped.rows["event"].tolist() == ["START"]
    assert anomaly_kinds(mapped.anomalies) == ["unknown_event"]


def test_null_event_is_an_unknown_event_anomaly() -> None:
    mapped = map_bookings(booking_rows(2, event=[None, "A"]), bookings_mapping(), UTC)
    assert mapped.rows["event"].tolist() == ["START"]
    assert anomaly_kinds(mapped.anomalies) == ["unknown_event"]
    assert "NULL" in mapped.anomalies["detail"].iloc[0]
    assert mapped.anomalies["ts"].iloc[0] == utc("2024-03-04 06:00")
    assert mapped.codes[("<NULL>", "UNKNOWN")] == 1


# --------------------------------------------------------------------------- date + time columns

DATE_TIME = {"date": "d", "time": "t"}


@pytest.mark.parametrize(
    ("day", "time", "extra", "expected"),
    [
        pytest.param("2024-03-04", "06:07:08", {}, "2024-03-04 06:07:08", id="text-hh:mm:ss"),
        pytest.param("2024-03-04", "06:07", {}, "2024-03-04 06:07:00", id="text-hh:mm"),
        pytest.param("2024-03-04", "6:07", {}, "2024-03-04 06:07:00", id="text-h:mm"),
        pytest.param("2024-03-04", "060708", {}, "2024-03-04 06:07:08", id="text-hhmmss"),
        pytest.param("2024-03-04", " 06:07:08 ", {}, "2024-03-04 06:07:08", id="padded-text"),
        pytest.param("2024-03-04", 60708, {}, "2024-03-04 06:07:08", id="int-hhmmss"),
        pytest.param("2024-03-04", 235959, {}, "2024-03-04 23:59:59", id="int-last-second"),
        pytest.param("2024-03-04", 5, {}, "2024-03-04 00:00:05", id="int-seconds-only"),
        pytest.param(
            dt.date(2024, 3, 4), dt.time(6, 7, 8), {}, "2024-03-04 06:07:08", id="date-time-objects"
        ),
        pytest.param(
            dt.datetime(2024, 3, 4),
            dt.timedelta(hours=6, minutes=7, seconds=8),
            {},
            "2024-03-04 06:07:08",
            id="datetime-and-timedelta (MySQL TIME)",
        ),
        pytest.param(
            "20240304",
            "060708",
            {"date_format": "%Y%m%d"},
            "2024-03-04 06:07:08",
            id="sap-yyyymmdd-hhmmss",
        ),
        pytest.param(
            20240304, 60708, {"date_format": "%Y%m%d"}, "2024-03-04 06:07:08", id="sap-as-integers"
        ),
        pytest.param(
            "04.03.2024",
            "06:07",
            {"date_format": "%d.%m.%Y"},
            "2024-03-04 06:07:00",
            id="german-dd.mm.yyyy",
        ),
        pytest.param(
            "2024-03-04", "06.07", {"time_format": "%H.%M"}, "2024-03-04 06:07:00", id="time-format"
        ),
    ],
)
def test_date_and_time_in_separate_columns(
    day: Any, time: Any, extra: dict[str, Any], expected: str
) -> None:
    got = one_timestamp({"d": [day], "t": [time]}, {**DATE_TIME, **extra})
    assert got == utc(expected)


@pytest.mark.parametrize(
    ("day", "time", "extra"),
    [
        pytest.param("2024-03-04", "25:00", {}, id="hour-25"),
        pytest.param("2024-03-04", "06:61", {}, id="minute-61"),
        pytest.param("2024-03-04", 240000, {}, id="int-240000"),
        pytest.param("2024-03-04", "xx", {}, id="garbage-time"),
        pytest.param("2024-03-04", None, {}, id="null-time"),
        pytest.param(None, "06:00", {}, id="null-date"),
        pytest.param("31.02.2024", "06:00", {"date_format": "%d.%m.%Y"}, id="no-31-feb"),
        pytest.param("2024-03-04", "06:00", {"date_format": "%Y%m%d"}, id="wrong-date-format"),
    ],
)
def test_unusable_date_or_time_gives_nat(day: Any, time: Any, extra: dict[str, Any]) -> None:
    assert pd.isna(one_timestamp({"d": [day], "t": [time]}, {**DATE_TIME, **extra}))


def test_date_time_columns_are_read_in_the_plant_zone() -> None:
    # 2024-07-01 is summer time in Berlin (UTC+2)
    got = one_timestamp({"d": ["2024-07-01"], "t": ["06:00"]}, DATE_TIME, BERLIN)
    assert got == utc("2024-07-01 04:00")


def test_date_time_mapping_through_map_bookings() -> None:
    mapping = bookings_mapping(
        {"timestamp": {"date": "BUDAT", "time": "ISDZ", "date_format": "%Y%m%d"}}
    )
    frame = booking_rows(2, BUDAT=["20240304", "20240304"], ISDZ=["060000", "093000"])
    frame = frame.drop(columns="booked_at").assign(event=["A", "E"])
    mapped = map_bookings(frame, mapping, BERLIN)
    assert mapped.rows["ts"].tolist() == [utc("2024-03-04 05:00"), utc("2024-03-04 08:30")]
    assert mapped.anomalies.empty


# --------------------------------------------------------------------------- constants


def test_constant_value_columns() -> None:
    mapping = bookings_mapping(
        {"machine_code": {"value": "PRESS-07"}, "product_code": {"value": 7}}
    )
    mapped = map_bookings(booking_rows(2).drop(columns=["machine", "article"]), mapping, UTC)
    assert mapped.rows["machine_code"].tolist() == ["PRESS-07", "PRESS-07"]
    assert mapped.rows["product_code"].tolist() == ["7", "7"]


def test_missing_optional_product_is_na() -> None:
    mapping = bookings_mapping({"product_code": None})
    mapped = map_bookings(booking_rows(1).drop(columns="article"), mapping, UTC)
    assert mapped.rows["product_code"].isna().all()
    assert len(mapped.rows) == 1


def test_constant_timestamp_value() -> None:
    got = one_timestamp({"x": [1]}, {"value": "2024-03-04 06:00"}, BERLIN)
    assert got == utc("2024-03-04 05:00")


# --------------------------------------------------------------------------- time zones and DST


def naive(*texts: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(texts), format="ISO8601")).astype("datetime64[us]")


@pytest.mark.parametrize(
    ("ambiguous", "expected"),
    [("earlier", "2024-10-27 00:30"), ("later", "2024-10-27 01:30")],
)
def test_repeated_autumn_hour_follows_the_policy(ambiguous: str, expected: str) -> None:
    # 2024-10-27: Berlin goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    policy = DstPolicy.model_validate({"ambiguous": ambiguous})
    got = localize(naive("2024-10-27 02:30"), BERLIN, policy)
    assert got.tolist() == [utc(expected)]


@pytest.mark.parametrize(
    ("nonexistent", "expected"),
    [
        # read with the offset before the change (+01:00), as PostgreSQL does: 02:30 -> 03:30 CEST
        ("shift_forward", "2024-03-31 01:30:00"),
        # read with the offset after the change (+02:00): 02:30 -> 01:30 CET
        ("shift_backward", "2024-03-31 00:30:00"),
    ],
)
def test_skipped_spring_hour_follows_the_policy(nonexistent: str, expected: str) -> None:
    # 2024-03-31: Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist.
    policy = DstPolicy.model_validate({"nonexistent": nonexistent})
    got = localize(naive("2024-03-31 02:30"), BERLIN, policy)
    assert got.tolist() == [utc(expected)]


@pytest.mark.parametrize(
    ("nonexistent", "first", "second", "minutes"),
    [
        # a terminal still on winter time books 01:50 and then 02:10: 20 minutes apart
        ("shift_forward", "2024-03-31 01:50", "2024-03-31 02:10", 20),
        # a terminal already on summer time books 02:10 and then 03:30: 80 minutes apart
        ("shift_backward", "2024-03-31 02:10", "2024-03-31 03:30", 80),
    ],
)
def test_a_duration_across_the_spring_gap_stays_true(
    nonexistent: str, first: str, second: str, minutes: int
) -> None:
    policy = DstPolicy.model_validate({"nonexistent": nonexistent})
    got = localize(naive(first, second), BERLIN, policy)
    assert got.iloc[1] - got.iloc[0] == pd.Timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("nonexistent", "expected"),
    [
        ("shift_forward", "2024-10-05 15:45"),  # offset before the change: +10:30
        ("shift_backward", "2024-10-05 15:15"),  # offset after the change: +11:00
    ],
)
def test_skipped_time_moves_by_the_zones_own_gap(nonexistent: str, expected: str) -> None:
    # 2024-10-06: Australia/Lord_Howe goes from 02:00 +10:30 to 02:30 +11:00.
    policy = DstPolicy.model_validate({"nonexistent": nonexistent})
    got = localize(naive("2024-10-06 02:15"), ZoneInfo("Australia/Lord_Howe"), policy)
    assert got.tolist() == [utc(expected)]


@pytest.mark.parametrize(
    "policy",
    [
        DstPolicy.model_validate({"ambiguous": a, "nonexistent": n})
        for a in ("earlier", "later")
        for n in ("shift_forward", "shift_backward")
    ],
)
def test_times_around_the_changes_are_not_affected_by_the_policy(policy: DstPolicy) -> None:
    got = localize(
        naive(
            "2024-10-27 01:59:59",
            "2024-10-27 03:00:00",
            "2024-03-31 01:59:59",
            "2024-03-31 03:00:00",
            "2024-07-01 12:00:00",
        ),
        BERLIN,
        policy,
    )
    assert got.tolist() == [
        utc("2024-10-26 23:59:59"),
        utc("2024-10-27 02:00:00"),
        utc("2024-03-31 00:59:59"),
        utc("2024-03-31 01:00:00"),
        utc("2024-07-01 10:00:00"),
    ]


def test_nat_survives_localize() -> None:
    got = localize(naive("2024-10-27 02:30", "NaT"), BERLIN, DstPolicy())
    assert got.iloc[0] == utc("2024-10-27 00:30")
    assert pd.isna(got.iloc[1])


@pytest.mark.parametrize(
    "zone",
    ["Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "Etc/GMT+5"],
)
@pytest.mark.parametrize(
    "policy",
    [
        DstPolicy.model_validate({"ambiguous": a, "nonexistent": n})
        for a in ("earlier", "later")
        for n in ("shift_forward", "shift_backward")
    ],
)
def test_localizing_a_batch_by_the_hour_matches_localizing_each_value(
    zone: str, policy: DstPolicy
) -> None:
    # A dense batch (one offset per wall-clock hour, the fast path) across both changes of the
    # year: every value, the repeated and the skipped hour included, as when localized one by one.
    rng = np.random.default_rng(7)
    lo = pd.Timestamp("2024-01-01").value // 1000
    micros = np.sort(rng.integers(lo, lo + 366 * 86_400_000_000, 40_000))
    micros[::997] = np.iinfo(np.int64).min  # NaT
    for part in np.array_split(micros, 8):  # batches spanning ~46 days: fewer hours than values
        values = pd.Series(part.view("datetime64[us]"), index=np.arange(len(part)) // 2)
        got = localize(values, ZoneInfo(zone), policy)
        expected = _localize_each(values.reset_index(drop=True), ZoneInfo(zone), policy)
        assert got.index.equals(values.index)
        pd.testing.assert_series_equal(got.reset_index(drop=True), expected)


def test_dst_policy_of_the_mapping_is_used_by_map_bookings() -> None:
    mapping = bookings_mapping(dst={"ambiguous": "later", "nonexistent": "shift_backward"})
    frame = booking_rows(2, booked_at=["2024-10-27 02:30:00", "2024-03-31 02:30:00"])
    mapped = map_bookings(frame, mapping, BERLIN)
    assert mapped.rows["ts"].tolist() == [utc("2024-10-27 01:30"), utc("2024-03-31 00:30")]


def test_utc_connector_does_not_shift() -> None:
    got = one_timestamp({"x": ["2024-10-27 02:30:00"]}, {"column": "x"}, UTC)
    assert got == utc("2024-10-27 02:30")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(dt.datetime(2024, 3, 4, 6, 7, 8, tzinfo=dt.UTC), id="python-utc"),
        pytest.param(
            dt.datetime(2024, 3, 4, 8, 7, 8, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            id="python-fixed-offset",
        ),
        pytest.param(
            dt.datetime(2024, 3, 4, 7, 7, 8, tzinfo=ZoneInfo("Europe/Berlin")), id="python-zoneinfo"
        ),
        pytest.param(pd.Timestamp("2024-03-04 01:07:08", tz="America/New_York"), id="pandas-tz"),
        pytest.param("2024-03-04T08:07:08+02:00", id="iso-text-with-offset"),
        pytest.param("2024-03-04T06:07:08Z", id="iso-text-zulu"),
    ],
)
def test_tz_aware_input_is_converted_not_shifted(value: Any) -> None:
    # The connector zone (Berlin) only applies to naive values; an aware value is one instant.
    got = one_timestamp({"x": [value]}, {"column": "x"}, BERLIN)
    assert got == utc("2024-03-04 06:07:08")


def test_tz_aware_datetime64_column_is_converted() -> None:
    column = pd.Series(
        pd.to_datetime(["2024-03-04 06:07:08", "2024-07-04 06:07:08"])
    ).dt.tz_localize("Europe/Berlin")
    got = timestamps(
        pd.DataFrame({"x": column}), ColumnSpec.model_validate({"column": "x"}), UTC, DstPolicy()
    )
    assert got.tolist() == [utc("2024-03-04 05:07:08"), utc("2024-07-04 04:07:08")]


def test_tz_aware_objects_with_different_offsets_are_all_kept() -> None:
    # What pyodbc (datetimeoffset) or oracledb (TIMESTAMP WITH TIME ZONE) return across a DST change.
    winter = dt.datetime(2024, 3, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    summer = dt.datetime(2024, 7, 4, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    got = timestamps(
        pd.DataFrame({"x": pd.Series([winter, summer], dtype=object)}),
        ColumnSpec.model_validate({"column": "x"}),
        BERLIN,
        DstPolicy(),
    )
    assert got.tolist() == [utc("2024-03-04 06:00"), utc("2024-07-04 06:00")]


def test_iso_text_with_different_offsets_is_converted() -> None:
    frame = booking_rows(2, booked_at=["2024-03-04T07:00:00+01:00", "2024-07-04T08:00:00+02:00"])
    mapped = map_bookings(frame, bookings_mapping(), BERLIN)
    assert mapped.rows["ts"].tolist() == [utc("2024-03-04 06:00"), utc("2024-07-04 06:00")]


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(["2024-03-04 07:00:00", "2024-03-04T07:00:00+01:00"], id="text"),
        pytest.param(
            [
                dt.datetime(2024, 3, 4, 7, 0),
                dt.datetime(2024, 3, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            ],
            id="python-datetimes",
        ),
    ],
)
def test_naive_values_next_to_aware_ones_are_still_plant_time(column: list[Any]) -> None:
    got = timestamps(
        pd.DataFrame({"x": pd.Series(column, dtype=object)}),
        ColumnSpec.model_validate({"column": "x"}),
        BERLIN,
        DstPolicy(),
    )
    assert got.tolist() == [utc("2024-03-04 06:00"), utc("2024-03-04 06:00")]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2024-03-04 06:07:08.123456", id="text"),
        pytest.param(dt.datetime(2024, 3, 4, 6, 7, 8, 123456), id="python-datetime"),
        pytest.param(pd.Timestamp("2024-03-04 06:07:08.123456"), id="pandas-timestamp"),
    ],
)
def test_microseconds_are_kept(value: Any) -> None:
    got = one_timestamp({"x": [value]}, {"column": "x"}, UTC)
    assert got == utc("2024-03-04 06:07:08.123456")
    assert got.microsecond == 123456


def test_microseconds_in_a_time_column_are_kept() -> None:
    got = one_timestamp({"d": ["2024-03-04"], "t": ["06:07:08.000001"]}, DATE_TIME)
    assert got == utc("2024-03-04 06:07:08.000001")
    got = one_timestamp({"d": [dt.date(2024, 3, 4)], "t": [dt.time(6, 7, 8, 999999)]}, DATE_TIME)
    assert got == utc("2024-03-04 06:07:08.999999")


def test_text_with_an_explicit_format() -> None:
    got = one_timestamp({"x": ["04.03.2024 06:07"]}, {"column": "x", "format": "%d.%m.%Y %H:%M"})
    assert got == utc("2024-03-04 06:07")


# --------------------------------------------------------------------------- bad rows


def test_null_and_unparseable_timestamps_become_bad_timestamp_anomalies() -> None:
    frame = booking_rows(4, booked_at=["2024-03-04 06:00:00", None, "garbage", ""])
    mapped = map_bookings(frame, bookings_mapping(), UTC)
    assert mapped.rows["ts"].tolist() == [utc("2024-03-04 06:00")]
    assert anomaly_kinds(mapped.anomalies) == ["bad_timestamp"] * 3
    details = mapped.anomalies["detail"].tolist()
    assert "booked_at=NULL" in details[0]
    assert "booked_at='garbage'" in details[1]
    assert "booked_at=''" in details[2]
    assert mapped.anomalies["ts"].isna().all()
    assert set(mapped.anomalies["machine_code"]) == {"M-01"}


def test_bad_time_on_a_known_day_is_reported_on_that_day() -> None:
    mapping = bookings_mapping({"timestamp": {"date": "d", "time": "t"}})
    frame = booking_rows(3, d=["2024-03-04", "2024-07-04", None], t=["xx", None, "06:00"])
    mapped = map_bookings(frame.drop(columns="booked_at"), mapping, BERLIN)
    assert mapped.rows.empty
    assert anomaly_kinds(mapped.anomalies) == ["bad_timestamp"] * 3
    # the plant-local midnight of the booking's day, in UTC
    assert mapped.anomalies["ts"].iloc[0] == utc("2024-03-03 23:00")
    assert mapped.anomalies["ts"].iloc[1] == utc("2024-07-03 22:00")
    assert pd.isna(mapped.anomalies["ts"].iloc[2])
    assert mapped.anomalies["detail"].iloc[0].endswith("d='2024-03-04' t='xx'")
    assert mapped.anomalies["detail"].iloc[1].endswith("d='2024-07-04' t=NULL")


def test_ignored_rows_with_bad_timestamps_are_not_reported() -> None:
    frame = booking_rows(2, booked_at=[None, "2024-03-04 06:00:00"], event=["Q", "A"])
    mapped = map_bookings(frame, bookings_mapping(), UTC)
    assert len(mapped.rows) == 1
    assert mapped.anomalies.empty


@pytest.mark.parametrize(
    ("column", "values", "kind"),
    [
        ("machine", [None, "   "], "missing_machine_code"),
        ("order_no", ["", None], "missing_order_code"),
    ],
)
def test_missing_machine_or_order_is_an_anomaly(column: str, values: list[Any], kind: str) -> None:
    frame = booking_rows(3, **{column: [*values, "X"]})
    mapped = map_bookings(frame, bookings_mapping(), UTC)
    assert len(mapped.rows) == 1
    assert anomaly_kinds(mapped.anomalies) == [kind, kind]
    assert mapped.anomalies["ts"].tolist() == [utc("2024-03-04 06:00"), utc("2024-03-04 06:01")]


def test_one_anomaly_per_bad_row() -> None:
    frame = booking_rows(1, machine=[None], order_no=[None], booked_at=[None])
    mapped = map_bookings(frame, bookings_mapping(), UTC)
    assert mapped.rows.empty
    assert anomaly_kinds(mapped.anomalies) == ["bad_timestamp"]


def test_canonical_booking_shape() -> None:
    mapped = map_bookings(booking_rows(2, event=["A", "E"]), bookings_mapping(), UTC)
    assert list(mapped.rows.columns) == [
        "ts",
        "machine_code",
        "order_code",
        "product_code",
        "event",
    ]
    assert str(mapped.rows["ts"].dtype) == "datetime64[us, UTC]"
    assert mapped.rows.index.tolist() == [0, 1]


def test_empty_batch() -> None:
    mapped = map_bookings(booking_rows(0), bookings_mapping(), BERLIN)
    assert mapped.rows.empty
    assert mapped.anomalies.empty
    assert mapped.rows_read == 0


def mixed_bookings(codes: list[Any], code_type: pa.DataType, n: int = 600) -> pa.Table:
    """Bookings with every kind of trouble: blank and NULL codes, padding, unknown and ignored
    events, NULL times, and times in the repeated and the skipped hour of Berlin."""
    rng = np.random.default_rng(3)
    base = pd.Timestamp("2024-10-26 20:00").value // 1000
    micros = base + rng.integers(0, 10 * 3_600_000_000, n)
    micros[rng.random(n) < 0.05] = np.iinfo(np.int64).min
    micros[:2] = [pd.Timestamp(t).value // 1000 for t in ("2024-10-27 02:30", "2024-10-27 02:59")]

    def pick(values: list[Any]) -> list[Any]:
        return [values[i] for i in rng.integers(0, len(values), n)]

    return pa.table(
        {
            "booked_at": pa.array(micros.view("datetime64[us]"), pa.timestamp("us")),
            "machine": pa.array(pick(["M-01", " M-02 ", "", "   ", None, "M\u00a003 "])),
            "order_no": pa.array(pick(["4711", "4712 ", "", None])),
            "article": pa.array(pick(["P-1", None, " P-2"])),
            "event": pa.array(pick(codes), code_type),
        }
    )


@pytest.mark.parametrize(
    ("codes", "code_type", "events"),
    [
        pytest.param(
            [10, 20, 30, 99, None],
            pa.int64(),
            {"START": [10], "END": [20], "ignore": [30]},
            id="int-codes-with-null",
        ),
        pytest.param(
            [10, 20, 30, 99],
            pa.int32(),
            {"START": [10], "END": [20], "ignore": [30]},
            id="int-codes",
        ),
        pytest.param(
            ["A", " A", "E ", "Q", "", "  ", "x", None], pa.string(), None, id="text-codes"
        ),
        pytest.param(
            [10.0, 20.5, 30.0, None],
            pa.float64(),
            {"START": [10], "END": ["20.5"]},
            id="fractional-codes",
        ),
    ],
)
@pytest.mark.parametrize("trim", [None, False])
def test_arrow_backed_frames_map_like_python_objects(
    codes: list[Any], code_type: pa.DataType, events: dict[str, Any] | None, trim: bool | None
) -> None:
    # The same rows as read_frames hands them over (Arrow-backed text, int64 or float64 for an
    # integer column with NULLs), as pd.ArrowDtype columns, and as Python objects (the SQLAlchemy
    # path): the Arrow fast paths and the generic ones must agree on everything.
    table = mixed_bookings(codes, code_type)
    mapping = bookings_mapping(
        {"machine_code": {"column": "machine", **({} if trim is None else {"trim": trim})}},
        **({"events": events} if events else {}),
    )
    objects = pd.DataFrame(
        {c: pd.Series(table[c].to_pylist(), dtype=object) for c in table.column_names}
    )
    expected = map_bookings(objects, mapping, BERLIN)
    assert len(expected.rows) and len(expected.anomalies)  # the check has something to compare
    for frame in (
        table.to_pandas(date_as_object=True),
        table.to_pandas(types_mapper=pd.ArrowDtype),
    ):
        got = map_bookings(frame, mapping, BERLIN)
        pd.testing.assert_frame_equal(got.rows, expected.rows)
        pd.testing.assert_frame_equal(got.anomalies, expected.anomalies)
        assert list(got.codes.items()) == list(expected.codes.items())


# --------------------------------------------------------------------------- map_orders


def order_rows(**columns: list[Any]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base: dict[str, list[Any]] = {
        "order_no": [f"O{i}" for i in range(n)],
        "machine": ["M-01"] * n,
        "article": ["P-1"] * n,
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_orders_closed_and_open_runs() -> None:
    frame = order_rows(
        started_at=["2024-03-04 06:00:00", "2024-03-04 07:00:00", "2024-03-04 08:00:00"],
        finished_at=["2024-03-04 06:30:00", None, ""],
    )
    mapped = map_orders(frame, orders_mapping(), BERLIN)
    assert list(mapped.rows.columns) == RUN_COLUMNS
    assert mapped.rows["start"].tolist() == [
        utc("2024-03-04 05:00"),
        utc("2024-03-04 06:00"),
        utc("2024-03-04 07:00"),
    ]
    assert mapped.rows["end"].iloc[0] == utc("2024-03-04 05:30")
    # NULL and empty end: the run is still going
    assert mapped.rows["end"].iloc[1:].isna().all()
    assert mapped.anomalies.empty


def test_orders_from_datetime_objects() -> None:
    frame = order_rows(
        started_at=[dt.datetime(2024, 3, 4, 6), dt.datetime(2024, 3, 4, 7)],
        finished_at=[dt.datetime(2024, 3, 4, 6, 30, 0, 250000), None],
    )
    assert frame["finished_at"].dtype == "datetime64[us]"  # typed, with NaT for the NULL
    mapped = map_orders(frame, orders_mapping(), UTC)
    assert mapped.rows["end"].iloc[0] == utc("2024-03-04 06:30:00.25")
    assert pd.isna(mapped.rows["end"].iloc[1])
    assert mapped.anomalies.empty  # NaT in a typed end column is a running order, not a bad end


def test_order_ending_before_it_starts_is_an_anomaly() -> None:
    frame = order_rows(
        started_at=["2024-03-04 06:00:00", "2024-03-04 06:00:00"],
        finished_at=["2024-03-04 05:59:59", "2024-03-04 06:00:00"],
    )
    mapped = map_orders(frame, orders_mapping(), UTC)
    # a zero-length run is allowed; a negative one is not
    assert mapped.rows["order_code"].tolist() == ["O1"]
    assert anomaly_kinds(mapped.anomalies) == ["end_before_start"]
    anomaly = mapped.anomalies.iloc[0]
    assert anomaly["order_code"] == "O0"
    assert anomaly["ts"] == utc("2024-03-04 06:00")
    assert "2024-03-04 05:59:59" in anomaly["detail"]


def test_unparseable_end_is_an_anomaly_not_an_open_run() -> None:
    frame = order_rows(started_at=["2024-03-04 06:00:00"], finished_at=["soon"])
    mapped = map_orders(frame, orders_mapping(), UTC)
    assert mapped.rows.empty
    assert anomaly_kinds(mapped.anomalies) == ["bad_timestamp"]
    assert "finished_at='soon'" in mapped.anomalies["detail"].iloc[0]
    assert mapped.anomalies["ts"].iloc[0] == utc("2024-03-04 06:00")


def test_order_without_start_is_an_anomaly() -> None:
    frame = order_rows(started_at=[None, "yesterday"], finished_at=["2024-03-04 06:00:00", None])
    mapped = map_orders(frame, orders_mapping(), UTC)
    assert mapped.rows.empty
    assert anomaly_kinds(mapped.anomalies) == ["bad_timestamp", "bad_timestamp"]
    assert "start" in mapped.anomalies["detail"].iloc[0]


def test_order_without_machine_or_order_code_is_an_anomaly() -> None:
    frame = order_rows(
        started_at=["2024-03-04 06:00:00"] * 3,
        finished_at=[None] * 3,
        machine=["  ", "M-01", "M-01"],
        order_no=["O1", None, "O3"],
    )
    mapped = map_orders(frame, orders_mapping(), UTC)
    assert mapped.rows["order_code"].tolist() == ["O3"]
    assert sorted(anomaly_kinds(mapped.anomalies)) == ["missing_machine_code", "missing_order_code"]


def test_orders_with_date_and_time_columns() -> None:
    mapping = orders_mapping(
        {
            "start": {"date": "start_d", "time": "start_t"},
            "end": {"date": "end_d", "time": "end_t"},
        }
    )
    frame = order_rows(
        start_d=["2024-03-04", "2024-03-04"],
        start_t=["06:00", "07:00"],
        end_d=["2024-03-04", None],
        end_t=["07:00", None],
    )
    mapped = map_orders(frame, mapping, BERLIN)
    assert mapped.rows["start"].tolist() == [utc("2024-03-04 05:00"), utc("2024-03-04 06:00")]
    assert mapped.rows["end"].iloc[0] == utc("2024-03-04 06:00")
    assert pd.isna(mapped.rows["end"].iloc[1])
    assert mapped.anomalies.empty
