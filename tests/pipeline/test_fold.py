"""etl.pipeline.fold: canonical bookings (+ carried open runs) -> runs + anomalies.

Scenario tables are written literally (times are UTC on 2024-03-04 unless a date is given; ``-``
is an empty cell: no product, or an open run). Hypothesis checks the properties the sync relies
on: order independence, idempotence, carry-over across split windows, sane runs.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.pipeline.fold import carry_margin, fold
from etl.shapes import ANOMALY_COLUMNS, RUN_COLUMNS, FoldPolicy

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
    pd.testing.assert_frame_equal(
        canonical(actual[list(expected.columns)]), canonical(expected), check_dtype=False
    )
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
    # the second START booked another product: kept the START's, flagged
    assert anomalies(result) == [
        ("duplicate_start", "M1", "O1", "07:00"),
        ("product_changed", "M1", "O1", "07:00"),
    ]
    assert "2024-03-04 06:00:00" in result.anomalies["detail"].iloc[0]
    assert result.runs["flags"].tolist() == ["product_changed"]


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
    assert anomalies(result) == [
        ("duplicate_start", "M1", "O1", "06:00"),
        ("product_changed", "M1", "O1", "06:00"),
    ]


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


POLICIES = st.builds(
    FoldPolicy,
    on_new_order=st.sampled_from(["close", "overlap"]),
    zero_length=st.sampled_from(["drop", "keep"]),
    merge_gap=st.sampled_from([timedelta(0), timedelta(minutes=3)]),
    clock_skew=st.sampled_from([timedelta(0), timedelta(minutes=2)]),
    logins=st.sampled_from(["single", "count"]),
)
SPLITTABLE = st.builds(
    FoldPolicy,
    on_new_order=st.sampled_from(["close", "overlap"]),
    zero_length=st.sampled_from(["drop", "keep"]),
)


@PROPERTY
@given(booking_rows, st.randoms(use_true_random=False), POLICIES)
def test_result_does_not_depend_on_row_order(
    rows: list[Any], rnd: random.Random, policy: FoldPolicy
) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    first, second = fold(frame_of(rows), policy=policy), fold(frame_of(shuffled), policy=policy)
    assert_same(first.runs, second.runs)
    assert_same(first.anomalies, second.anomalies)


@settings(max_examples=30, deadline=None)
@given(booking_rows, POLICIES)
def test_folding_is_idempotent_and_leaves_the_input_alone(
    rows: list[Any], policy: FoldPolicy
) -> None:
    frame = frame_of(rows)
    before = frame.copy()
    first, second = fold(frame, policy=policy), fold(frame, policy=policy)
    pd.testing.assert_frame_equal(frame, before)
    pd.testing.assert_frame_equal(first.runs, second.runs)
    pd.testing.assert_frame_equal(first.anomalies, second.anomalies)


def _split(
    events: pd.DataFrame, lo: pd.Timestamp, cut: pd.Timestamp, policy: FoldPolicy
) -> tuple[Any, Any]:
    """What the sync does: a first run sees bookings up to ``cut``; the next one re-reads from
    ``lo <= cut``, carrying the runs that started before ``lo`` and were open at ``lo`` (or ended
    within the policy's carry margin before it)."""
    first = fold(events[events["ts"] < cut], policy=policy)
    before_lo = first.runs[first.runs["start"] < lo]
    reach = lo - carry_margin(policy)
    carry = before_lo["end"].isna() | (before_lo["end"] >= reach)
    kept, carried = before_lo[~carry], before_lo[carry]
    second = fold(events[events["ts"] >= lo], carried, policy=policy, lo=lo.to_pydatetime())
    runs_ = pd.concat([kept, second.runs], ignore_index=True)
    found = pd.concat(
        [first.anomalies[first.anomalies["ts"] < lo], second.anomalies], ignore_index=True
    )
    return runs_, found


@PROPERTY
@given(booking_rows, st.integers(0, 41), st.integers(0, 20), SPLITTABLE)
def test_split_windows_with_carry_over_equal_one_window(
    rows: list[Any], lo_minute: int, overlap: int, policy: FoldPolicy
) -> None:
    events = frame_of(rows)
    lo = START + pd.Timedelta(minutes=lo_minute)
    whole = fold(events, policy=policy)
    runs_, found = _split(events, lo, lo + pd.Timedelta(minutes=overlap), policy)
    assert_same(runs_, whole.runs)
    assert_same(found, whole.anomalies)


@PROPERTY
@given(booking_rows, st.integers(0, 41), st.integers(0, 20))
def test_split_windows_with_merging_give_the_same_runs(
    rows: list[Any], lo_minute: int, overlap: int
) -> None:
    policy = FoldPolicy(merge_gap=timedelta(minutes=3))
    events = frame_of(rows)
    lo = START + pd.Timedelta(minutes=lo_minute)
    whole = fold(events, policy=policy)
    runs_, _ = _split(events, lo, lo + pd.Timedelta(minutes=overlap), policy)
    base = ["machine_code", "order_code", "product_code", "start", "end"]
    assert_same(runs_[base], whole.runs[base])


@PROPERTY
@given(booking_rows, POLICIES)
def test_no_run_ends_before_it_starts_and_exclusive_machines_never_overlap(
    rows: list[Any], policy: FoldPolicy
) -> None:
    found = fold(frame_of(rows), policy=policy).runs
    closed = found[found["end"].notna()]
    assert (closed["end"] >= closed["start"]).all(), "a run ends before it starts"
    if policy.zero_length == "drop" and policy.clock_skew == timedelta(0):
        assert (closed["end"] > closed["start"]).all()
    groups = ["machine_code"] if policy.on_new_order == "close" else ["machine_code", "order_code"]
    for _, group in found.groupby(groups):
        group = group.sort_values(["start", "order_code"])
        ends = group["end"].iloc[:-1]
        assert ends.notna().all(), "only the last run of a machine may be open"
        assert (group["start"].iloc[1:].to_numpy() >= ends.to_numpy()).all(), "runs overlap"


@PROPERTY
@given(booking_rows)
def test_every_booking_is_accounted_for_with_plain_rules(rows: list[Any]) -> None:
    events = frame_of(rows)
    result = fold(events, policy=FoldPolicy(on_new_order="overlap", zero_length="keep"))
    found = result.runs
    closed = found[found["end"].notna()]
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


# --------------------------------------------------------------------------- policies


def test_another_order_started_on_the_machine_closes_the_open_run_by_default() -> None:
    events = bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | A     | P1      | START
        08:00 | M1      | B     | P2      | START
        09:00 | M1      | A     | P1      | END
        10:00 | M1      | B     | P2      | END
        """)
    result = fold(events)
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | A     | P1      | 06:00 | 08:00
        M1      | B     | P2      | 08:00 | 10:00
        """),
    )
    assert list(result.runs["flags"].fillna("-")) == ["closed_by_next_order", "-"]
    assert anomalies(result) == [("orphan_end", "M1", "A", "09:00")]  # A's own END came too late

    overlap = fold(events, policy=FoldPolicy(on_new_order="overlap"))
    assert_runs(
        overlap.runs,
        runs("""
        machine | order | product | start | end
        M1      | A     | P1      | 06:00 | 09:00
        M1      | B     | P2      | 08:00 | 10:00
        """),
    )
    assert anomalies(overlap) == []


def test_an_end_and_the_next_orders_start_at_the_same_second_hand_over_cleanly() -> None:
    result = fold(
        bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | B     | P2      | START
        06:00 | M1      | A     | P1      | END
        05:00 | M1      | A     | P1      | START
        """)
    )
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | A     | P1      | 05:00 | 06:00
        M1      | B     | P2      | 06:00 | -
        """),
    )
    assert result.runs["flags"].isna().all()  # closed by its own END, not by B
    assert anomalies(result) == []


def test_overlapping_operator_logins_give_one_run_over_their_union() -> None:
    events = bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | A     | P1      | START
        07:00 | M1      | A     | P1      | START
        09:00 | M1      | A     | P1      | END
        10:00 | M1      | A     | P1      | END
        11:00 | M1      | A     | P1      | END
        """)
    result = fold(events, policy=FoldPolicy(logins="count"))
    assert_runs(
        result.runs,
        runs("""
        machine | order | product | start | end
        M1      | A     | P1      | 06:00 | 10:00
        """),
    )
    assert anomalies(result) == [("orphan_end", "M1", "A", "11:00")]
    single = fold(events)  # default: the second START is a duplicate, the first END closes
    assert single.runs["end"].tolist() == [pd.Timestamp(f"{DAY} 09:00", tz="UTC")]


def test_short_pauses_merge_when_a_gap_is_configured() -> None:
    events = bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | A     | P1      | START
        13:58 | M1      | A     | P1      | END
        14:03 | M1      | A     | P1      | START
        16:00 | M1      | A     | P1      | END
        17:00 | M1      | A     | P1      | START
        """)
    merged = fold(events, policy=FoldPolicy(merge_gap=timedelta(minutes=10)))
    assert_runs(
        merged.runs,
        runs("""
        machine | order | product | start | end
        M1      | A     | P1      | 06:00 | 16:00
        M1      | A     | P1      | 17:00 | -
        """),
    )
    assert list(merged.runs["flags"].fillna("-")) == ["merged", "-"]
    assert len(fold(events).runs) == 3  # default: no merging


def test_end_slightly_before_start_is_clock_skew_within_the_tolerance() -> None:
    events = bookings("""
        ts       | machine | order | product | event
        06:00:00 | M1      | A     | P1      | START
        09:59:58 | M1      | A     | P1      | END
        10:00:00 | M1      | B     | P2      | START
        11:59:59 | M1      | B     | P2      | END
        12:00:01 | M1      | B     | P2      | START
        """)
    plain = fold(events)
    assert anomalies(plain) == []  # B runs 10:00-11:59:59, and again from 12:00:01
    skewed = bookings("""
        ts       | machine | order | product | event
        05:59:59 | M2      | C     | P1      | END
        06:00:01 | M2      | C     | P1      | START
        """)
    assert anomalies(fold(skewed)) == [("orphan_end", "M2", "C", "05:59")]
    tolerant = fold(skewed, policy=FoldPolicy(clock_skew=timedelta(seconds=5)))
    assert tolerant.runs["end"].notna().all()  # not left open forever
    assert list(tolerant.runs["flags"]) == ["clock_skew"]
    assert [k for k, *_ in anomalies(tolerant)] == ["clock_skew"]


def test_zero_length_runs_are_dropped_or_kept_by_policy() -> None:
    events = bookings("""
        ts    | machine | order | product | event
        06:00 | M1      | A     | P1      | START
        06:00 | M1      | B     | P1      | START
        """)
    dropped = fold(events)  # A is closed by B at the same second: zero length
    assert dropped.runs["order_code"].tolist() == ["B"]
    assert anomalies(dropped) == [("zero_length_run", "M1", "A", "06:00")]
    kept = fold(events, policy=FoldPolicy(zero_length="keep"))
    assert sorted(kept.runs["order_code"]) == ["A", "B"]


def test_runs_open_too_long_are_flagged_stale() -> None:
    events = bookings("""
        ts               | machine | order | product | event
        2024-02-01 06:00 | M1      | A     | P1      | START
        2024-03-04 05:00 | M2      | B     | P1      | START
        """)
    hi = pd.Timestamp(f"{DAY} 06:00", tz="UTC").to_pydatetime()
    result = fold(events, policy=FoldPolicy(max_open=timedelta(days=7)), hi=hi)
    flags = dict(zip(result.runs["order_code"], result.runs["flags"].fillna("-"), strict=True))
    assert flags == {"A": "stale", "B": "-"}
    assert result.runs["end"].isna().all()  # stale runs stay open
    assert [k for k, *_ in anomalies(result)] == ["stale_open_run"]


def test_a_run_across_the_autumn_dst_change_has_its_true_duration() -> None:
    from zoneinfo import ZoneInfo

    from etl.config.models import MappingSpec
    from etl.pipeline.mapping import map_bookings

    mapping = MappingSpec.model_validate(
        {
            "structure": "bookings",
            "source": {"table": "B"},
            "columns": {"timestamp": "TS", "order_code": "A", "machine_code": "M", "event": "E"},
            "events": {"START": ["S"], "END": ["E"]},
        }
    )
    raw = pd.DataFrame(
        {
            "TS": ["2026-10-25 01:30:00", "2026-10-25 03:30:00"],  # clocks go back at 03:00
            "A": ["4711", "4711"],
            "M": ["M1", "M1"],
            "E": ["S", "E"],
        }
    )
    mapped = map_bookings(raw, mapping, ZoneInfo("Europe/Berlin"))
    result = fold(mapped.rows)
    run = result.runs.iloc[0]
    assert run["end"] - run["start"] == pd.Timedelta(hours=3)  # 2 h of wall clock, 3 h of time


# ----------------------------------------------------------------------------- run attributes

from datetime import UTC, datetime  # noqa: E402

from etl.config.models import MappingSpec  # noqa: E402
from etl.pipeline.structures import Bookings, Reach  # noqa: E402
from etl.sources.reader import Window  # noqa: E402

ATTRIBUTE_MAPPING = MappingSpec.model_validate(
    {
        "structure": "bookings",
        "source": {"table": "T"},
        "columns": {"timestamp": "TS", "order_code": "O", "machine_code": "M", "event": "E"},
        "events": {"START": ["S", "R"], "END": ["E"], "ignore": ["Q"], "phases": {"setup": ["R"]}},
        "fold": {"grace": "5m"},
        "fields": {
            "good": {"column": "QTY", "type": "integer", "agg": "sum"},
            "peak": {"column": "QTY", "type": "integer", "agg": "max"},
            "least": {"column": "QTY", "type": "integer", "agg": "min"},
            "opening": {"column": "QTY", "type": "integer", "agg": "first"},
            "closing": {"column": "QTY", "type": "integer", "agg": "last"},
            "reports": {"column": "QTY", "type": "integer", "agg": "count"},
            "who": {"column": "WHO", "type": "text", "agg": "distinct"},
        },
    }
)
T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)

attribute_rows = st.lists(
    st.tuples(
        st.sampled_from(["M1", "M2"]),
        st.sampled_from(["A", "B"]),
        st.sampled_from(["START", "END", "IGNORE", "IGNORE", "SETUP"]),
        st.integers(0, 40),  # minutes after T0
        st.one_of(st.none(), st.integers(0, 50)),
        st.one_of(st.none(), st.sampled_from(["ann", "bob", "cem"])),
    ),
    max_size=30,
)


def _attribute_bookings(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": pd.Series(
                [T0 + timedelta(minutes=r[3]) for r in rows], dtype="datetime64[us, UTC]"
            ),
            "machine_code": pd.Series([r[0] for r in rows], dtype="string"),
            "order_code": pd.Series([r[1] for r in rows], dtype="string"),
            "product_code": pd.Series([None] * len(rows), dtype="string"),
            "phase": pd.Series(
                [
                    "setup" if r[2] == "SETUP" else "production" if r[2] == "START" else None
                    for r in rows
                ],
                dtype="string",
            ),
            "good": pd.Series([r[4] for r in rows], dtype="Int64"),
            "who": pd.Series([r[5] for r in rows], dtype="string"),
            "event": pd.Series(
                ["START" if r[2] == "SETUP" else r[2] for r in rows], dtype="string"
            ),
        }
    ).assign(
        peak=lambda f: f["good"],
        least=lambda f: f["good"],
        opening=lambda f: f["good"],
        closing=lambda f: f["good"],
        reports=lambda f: f["good"],
    )


def _derive(structure: Bookings, bookings: pd.DataFrame, window: Window, held: Any) -> Any:
    return structure.derive([bookings], window, Reach(window), held, []).runs


@settings(max_examples=60, deadline=None)
@given(attribute_rows, st.integers(1, 40))
def test_fields_of_a_split_derivation_equal_one_window(rows: list[Any], cut: int) -> None:
    """A run carried across a window boundary (with its stored fields) gets the fields, phase
    and bounds that one window over the same bookings gives: any bookings, any cut."""
    structure = Bookings(ATTRIBUTE_MAPPING)
    bookings = _attribute_bookings(rows)
    hi = T0 + timedelta(hours=2)
    mid = T0 + timedelta(minutes=cut)
    whole = _derive(structure, bookings, Window(T0, hi), None)
    first = _derive(structure, bookings, Window(T0, mid), None)
    margin = structure.carry_margin()

    def carried(lo: datetime, reach: timedelta) -> pd.DataFrame:
        open_then = first["end"].isna() | (first["end"] >= pd.Timestamp(lo - reach))
        return first[(first["start"] < pd.Timestamp(lo)) & open_then].reset_index(drop=True)

    second = _derive(structure, bookings, Window(mid, hi), carried)
    kept = first[
        (first["start"] < pd.Timestamp(mid))
        & first["end"].notna()
        & (first["end"] < pd.Timestamp(mid - margin))
    ]
    split = pd.concat([kept, second], ignore_index=True)
    columns = ["machine_code", "order_code", "start", "end", "phase", "attributes"]

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[columns].astype({c: "string" for c in columns if c not in ("start", "end")})
        return out.sort_values(["machine_code", "order_code", "start"], ignore_index=True)

    pd.testing.assert_frame_equal(tidy(split), tidy(whole))
