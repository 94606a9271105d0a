"""etl.fold: canonical bookings (+ carried open runs) -> runs + anomalies.

Scenario tables are written literally (times are UTC on 2024-03-04 unless a date is given; ``-``
is an empty cell: no product, or an open run). Hypothesis checks the properties the sync relies
on: order independence, idempotence, carry-over across split windows, sane runs.
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.fold import fold
from etl.schema import ANOMALY_COLUMNS, RUN_COLUMNS

DAY = "2024-03-04"


def _cells(text: str) -> list[dict[str, str]]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [cell.strip() for cell in lines[0].split("|")]
    return [
        dict(zip(header, [cell.strip() for cell in line.split("|")], strict=True))
        for line in lines[1:]
    ]


def _ts(cell: str) -> pd.Timestamp:
    if cell in ("", "-"):
        return pd.NaT
    return pd.Timestamp(cell if len(cell) > 8 else f"{DAY} {cell}", tz="UTC")


def _text(cell: str) -> Any:
    return None if cell in ("", "-") else cell


def _times(values: list[Any]) -> pd.Series:
    return pd.Series(values, dtype="datetime64[us, UTC]")


def bookings(text: str) -> pd.DataFrame:
    """``ts | machine | order | product | event`` -> canonical bookings."""
    rows = _cells(text)
    return pd.DataFrame(
        {
            "ts": _times([_ts(r["ts"]) for r in rows]),
            "machine_code": pd.Series([r["machine"] for r in rows], dtype="string"),
            "order_code": pd.Series([r["order"] for r in rows], dtype="string"),
            "product_code": pd.Series([_text(r["product"]) for r in rows], dtype="string"),
            "event": pd.Series([r["event"] for r in rows], dtype="string"),
        }
    )


def runs(text: str) -> pd.DataFrame:
    """``machine | order | product | start | end`` -> canonical runs (``end`` ``-``: open)."""
    rows = _cells(text)
    return pd.DataFrame(
        {
            "machine_code": pd.Series([r["machine"] for r in rows], dtype="string"),
            "order_code": pd.Series([r["order"] for r in rows], dtype="string"),
            "product_code": pd.Series([_text(r["product"]) for r in rows], dtype="string"),
            "start": _times([_ts(r["start"]) for r in rows]),
            "end": _times([_ts(r["end"]) for r in rows]),
        }
    )


NO_BOOKINGS = bookings("ts | machine | order | product | event")


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order, so frames can be compared regardless of how they were built."""
    return frame.sort_values(list(frame.columns), na_position="last", kind="stable").reset_index(
        drop=True
    )


def assert_runs(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual.columns) == RUN_COLUMNS
    pd.testing.assert_frame_equal(canonical(actual), canonical(expected), check_dtype=False)
    assert str(actual["start"].dtype) == "datetime64[us, UTC]"
    assert str(actual["end"].dtype) == "datetime64[us, UTC]"


def anomalies(result: Any) -> list[tuple[str, str, str, str]]:
    """(kind, machine, order, HH:MM) of every anomaly, sorted."""
    frame = result.anomalies
    assert list(frame.columns) == ANOMALY_COLUMNS
    return sorted(
        (r.kind, r.machine_code, r.order_code, r.ts.strftime("%H:%M"))
        for r in frame.itertuples(index=False)
    )


# --------------------------------------------------------------------------- scenarios


def test_start_then_end_is_one_run() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        08:30 | M1      | O1    | P1      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | 08:30
        """),
    )
    assert anomalies(result) == []


def test_start_without_end_is_an_open_run() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | -
        """),
    )
    assert anomalies(result) == []


def test_pause_and_resume_give_two_runs_of_the_same_order() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        08:00 | M1      | O1    | P1      | END
        09:15 | M1      | O1    | P1      | START
        11:00 | M1      | O1    | P1      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | 08:00
        M1      | O1    | P1      | 09:15 | 11:00
        """),
    )
    assert anomalies(result) == []


def test_duplicate_start_while_open_keeps_the_first_start() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        07:00 | M1      | O1    | P2      | START
        08:00 | M1      | O1    | P1      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | 08:00
        """),
    )
    assert anomalies(result) == [("duplicate_start", "M1", "O1", "07:00")]
    assert "2024-03-04 06:00:00" in result.anomalies["detail"].iloc[0]


def test_orphan_end_is_an_anomaly() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        05:00 | M1      | O1    | -       | END
        06:00 | M1      | O1    | P1      | START
        08:00 | M1      | O1    | P1      | END
        09:00 | M1      | O1    | P1      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | 08:00
        """),
    )
    assert anomalies(result) == [
        ("orphan_end", "M1", "O1", "05:00"),
        ("orphan_end", "M1", "O1", "09:00"),
    ]


def test_same_order_on_two_machines_gives_two_runs() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        06:30 | M2      | O1    | P1      | START
        08:00 | M1      | O1    | P1      | END
        09:00 | M2      | O1    | P1      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | 08:00
        M2      | O1    | P1      | 06:30 | 09:00
        """),
    )
    assert anomalies(result) == []


def test_an_end_on_another_machine_does_not_close_the_run() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        07:00 | M2      | O1    | P1      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | -
        """),
    )
    assert anomalies(result) == [("orphan_end", "M2", "O1", "07:00")]


def test_end_sorts_before_start_at_equal_timestamps() -> None:
    # Second-precision sources: the END of one run and the START of the next share a second.
    # The input lists the START first; the fold must still close before it reopens.
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        08:00 | M1      | O1    | P1      | START
        08:00 | M1      | O1    | P1      | END
        10:00 | M1      | O1    | P1      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | 08:00
        M1      | O1    | P1      | 08:00 | 10:00
        """),
    )
    assert anomalies(result) == []


def test_carried_open_run_is_closed_by_an_end_in_the_window() -> None:
    carried = runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | -
        """)
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | -       | END
        07:00 | M1      | O2    | P2      | START
        """),
        carried,
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | 2024-03-04 06:00
        M1      | O2    | P2      | 2024-03-04 07:00 | -
        """),
    )
    assert anomalies(result) == []


def test_carried_run_without_an_end_stays_open() -> None:
    carried = runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | -
        """)
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M2      | O1    | P1      | START
        07:00 | M2      | O1    | P1      | END
        """),
        carried,
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | -
        M2      | O1    | P1      | 2024-03-04 06:00 | 2024-03-04 07:00
        """),
    )
    assert anomalies(result) == []


def test_carried_run_with_no_bookings_at_all() -> None:
    carried = runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | -
        """)
    result = fold(NO_BOOKINGS, carried)
    assert_runs(result.runs, carried)
    assert anomalies(result) == []


def test_carried_run_closed_inside_the_window_is_closed_again_by_what_the_source_says() -> None:
    # The store says the run ended at 05:00 (inside the re-read window); the source now has the
    # END at 05:30 (a correction): the window's END wins, the stored end is not reused.
    carried = runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | 2024-03-04 05:00
        """)
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        05:30 | M1      | O1    | P1      | END
        """),
        carried,
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | 2024-03-04 05:30
        """),
    )
    # and if the END was deleted in the source, the run is open again
    reopened = fold(NO_BOOKINGS, carried)
    assert reopened.runs["end"].isna().all()


def test_start_in_the_window_while_a_carried_run_is_open_is_a_duplicate() -> None:
    carried = runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | -
        """)
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P9      | START
        07:00 | M1      | O1    | P1      | END
        """),
        carried,
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start            | end
        M1      | O1    | P1      | 2024-03-03 22:00 | 2024-03-04 07:00
        """),
    )
    assert anomalies(result) == [("duplicate_start", "M1", "O1", "06:00")]


def test_product_comes_from_the_start() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | O1    | P1      | START
        07:00 | M1      | O1    | P2      | END
        08:00 | M1      | O1    | -       | START
        09:00 | M1      | O1    | P3      | END
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | O1    | P1      | 06:00 | 07:00
        M1      | O1    | -       | 08:00 | 09:00
        """),
    )


def test_microseconds_are_kept() -> None:
    result = fold(
        bookings("""
        ts                         | machine | order | product | event
        2024-03-04 06:00:00.000001 | M1      | O1    | P1      | START
        2024-03-04 06:00:00.000002 | M1      | O1    | P1      | END
        """)
    )
    run = result.runs.iloc[0]
    assert run["end"] - run["start"] == pd.Timedelta(microseconds=1)


def test_nothing_in_nothing_out() -> None:
    result = fold(NO_BOOKINGS)
    assert list(result.runs.columns) == RUN_COLUMNS
    assert list(result.anomalies.columns) == ANOMALY_COLUMNS
    assert result.runs.empty
    assert result.anomalies.empty
    assert fold(NO_BOOKINGS, runs("machine | order | product | start | end")).runs.empty


# --------------------------------------------------------------------------- properties

START = pd.Timestamp(f"{DAY} 06:00", tz="UTC")

booking_rows = st.lists(
    st.tuples(
        st.integers(0, 40),  # minutes: a small range, so ties and interleavings are common
        st.sampled_from(["M1", "M2"]),
        st.sampled_from(["O1", "O2"]),
        st.sampled_from(["P1", "P2", None]),
        st.sampled_from(["START", "END"]),
    ),
    max_size=30,
)


def frame_of(rows: list[tuple[int, str, str, str | None, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": _times([START + pd.Timedelta(minutes=r[0]) for r in rows]),
            "machine_code": pd.Series([r[1] for r in rows], dtype="string"),
            "order_code": pd.Series([r[2] for r in rows], dtype="string"),
            "product_code": pd.Series([r[3] for r in rows], dtype="string"),
            "event": pd.Series([r[4] for r in rows], dtype="string"),
        }
    )


def assert_same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(canonical(left), canonical(right), check_dtype=False)


PROPERTY = settings(max_examples=75, deadline=None)


@PROPERTY
@given(booking_rows, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_row_order(rows: list[Any], rnd: random.Random) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    first, second = fold(frame_of(rows)), fold(frame_of(shuffled))
    assert_same(first.runs, second.runs)
    assert_same(first.anomalies, second.anomalies)


@settings(max_examples=30, deadline=None)
@given(booking_rows)
def test_folding_is_idempotent_and_leaves_the_input_alone(rows: list[Any]) -> None:
    frame = frame_of(rows)
    before = frame.copy()
    first, second = fold(frame), fold(frame)
    pd.testing.assert_frame_equal(frame, before)
    pd.testing.assert_frame_equal(first.runs, second.runs)
    pd.testing.assert_frame_equal(first.anomalies, second.anomalies)


@PROPERTY
@given(booking_rows, st.integers(0, 41), st.integers(0, 20))
def test_split_windows_with_carry_over_equal_one_window(
    rows: list[Any], lo_minute: int, overlap: int
) -> None:
    """What the sync does: a first run sees bookings up to ``cut``; the next one re-reads from
    ``lo <= cut``, carrying the runs that started before ``lo`` and were open at ``lo``."""
    events = frame_of(rows)
    lo = START + pd.Timedelta(minutes=lo_minute)
    cut = lo + pd.Timedelta(minutes=overlap)
    whole = fold(events)

    first = fold(events[events["ts"] < cut])
    before_lo = first.runs[first.runs["start"] < lo]
    open_at_lo = before_lo["end"].isna() | (before_lo["end"] >= lo)
    kept, carried = before_lo[~open_at_lo], before_lo[open_at_lo]
    second = fold(events[events["ts"] >= lo], carried)

    assert_same(pd.concat([kept, second.runs], ignore_index=True), whole.runs)
    first_anomalies = first.anomalies[first.anomalies["ts"] < lo]
    assert_same(pd.concat([first_anomalies, second.anomalies], ignore_index=True), whole.anomalies)


@PROPERTY
@given(booking_rows)
def test_runs_are_sane_and_every_booking_is_accounted_for(rows: list[Any]) -> None:
    events = frame_of(rows)
    result = fold(events)
    found = result.runs
    closed = found[found["end"].notna()]
    assert (closed["end"] > closed["start"]).all(), "a run ends before (or when) it starts"
    for _, group in found.groupby(["machine_code", "order_code"]):
        group = group.sort_values("start")
        # runs of one machine and order never overlap; only the last one may be open
        assert (group["start"].iloc[1:].to_numpy() >= group["end"].iloc[:-1].to_numpy()).all()
        assert group["end"].iloc[:-1].notna().all()
    kinds = result.anomalies["kind"].value_counts()
    starts = int((events["event"] == "START").sum())
    ends = int((events["event"] == "END").sum())
    assert len(found) + kinds.get("duplicate_start", 0) == starts
    assert len(closed) + kinds.get("orphan_end", 0) == ends


@pytest.mark.parametrize("n", [0, 1, 2])
def test_only_start_events_give_one_open_run_per_machine_and_order(n: int) -> None:
    rows = [(i, "M1", "O1", "P1", "START") for i in range(n + 1)]
    result = fold(frame_of(rows))
    assert len(result.runs) == 1
    assert result.runs["end"].isna().all()
    assert (result.anomalies["kind"] == "duplicate_start").sum() == n
