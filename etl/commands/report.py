"""The production timeline: one self-contained HTML file of runs per machine, with anomalies.

``store_timeline`` reads a job's runs and anomalies from the store (read-only); ``etl preview``
builds a :class:`Timeline` from runs it derived without writing them. ``render_html`` turns either
into one file that works offline in a plant network:

* the data sits in a ``<script type="application/json">`` block as compact columnar JSON with
  ``<``, ``>`` and ``&`` escaped, so a source value can never close the block or become markup;
* the page's script puts text into the DOM only through ``textContent`` and draws the runs on one
  ``<canvas>`` (culled per lane and time range, so 200 machines x 90 days stay responsive);
* a Content-Security-Policy allows only the page's own inline script and style (by hash) and no
  loads at all: no CDN, no fonts, no images, no network.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from etl import __version__
from etl.config.durations import parse_when, resolve_when
from etl.config.models import Project
from etl.errors import StoreError, UsageError
from etl.redact import redact
from etl.shapes import ANOMALY_COLUMNS
from etl.store.db import open_read_only

TEMPLATES = Path(__file__).parents[1] / "templates"
#: anomalies a report page lists; beyond this the page says how many more there are (all of
#: them stay in the store and in the Parquet dataset)
REPORT_ANOMALIES = 5_000
#: how far from "now" the data may lie and still widen the page's time axis
AXIS_REACH = pd.Timedelta(days=3660)


@dataclass
class Summary:
    """The numbers at the top of a report."""

    runs: int
    open_runs: int
    machines: int
    products: int
    hours: float
    anomalies: dict[str, int]

    @property
    def anomaly_count(self) -> int:
        """All anomalies."""
        return sum(self.anomalies.values())


@dataclass
class Timeline:
    """What a report shows: a job's runs and anomalies over a range, in the plant's zone."""

    job: str
    origin: str  # where the runs come from, e.g. "store" or "preview (dry run, nothing stored)"
    zone: ZoneInfo
    runs: pd.DataFrame
    anomalies: pd.DataFrame
    now: datetime  # what the data is known until: open runs reach this instant
    lo: datetime | None = None  # the range asked for (None: everything)
    hi: datetime | None = None
    generated: datetime | None = None
    #: anomalies by kind in the range when ``anomalies`` holds only the first of them
    anomaly_counts: dict[str, int] | None = None

    def summary(self) -> Summary:
        """Runs, open runs, machines, products, hours covered (inside the range; open runs up to
        ``now``) and anomalies by kind."""
        runs = self.runs
        start = runs["start"]
        end = runs["end"].fillna(pd.Timestamp(self.now))
        if self.lo is not None:
            start = start.clip(lower=pd.Timestamp(self.lo))
        if self.hi is not None:
            end = end.clip(upper=pd.Timestamp(self.hi))
        seconds = (end - start).dt.total_seconds().clip(lower=0).sum() if len(runs) else 0.0
        kinds = (
            Counter(self.anomaly_counts)
            if self.anomaly_counts is not None
            else Counter(str(kind) for kind in self.anomalies["kind"])
        )
        return Summary(
            runs=len(runs),
            open_runs=int(runs["end"].isna().sum()),
            machines=int(runs["machine_code"].nunique()),
            products=int(runs["product_code"].nunique()),
            hours=float(seconds) / 3600,
            anomalies=dict(sorted(kinds.items())),
        )


def store_timeline(
    project: Project,
    job_name: str,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
) -> Timeline:
    """The job's stored runs overlapping ``[since, until)`` and its anomalies in that range,
    read without writing anything (the store is opened read-only)."""
    job = project.job(job_name)
    zone = job.connector.zone
    now = now or datetime.now(UTC)
    lo = resolve_when(parse_when(since, zone, "--since"), now) if since else None
    hi = resolve_when(parse_when(until, zone, "--until"), now) if until else None
    if lo is not None and hi is not None and hi <= lo:
        raise UsageError(f"--until ({_iso(hi)}) must be after --since ({_iso(lo)})")
    store = open_read_only(project.spec.store, project.root, project.secrets)
    if store is None:
        raise UsageError(
            f"the store {redact(project.spec.store, project.secrets)} holds nothing yet",
            hint=f"run 'etl run {job_name}' first, or look at a dry run: "
            f"'etl preview {job_name} --html FILE'",
        )
    try:
        state = store.state(job_name)
        runs = store.runs_between(job_name, lo, hi)
        counts = store.anomaly_counts_between(job_name, lo, hi)
        found = store.anomalies_between(job_name, lo, hi, limit=REPORT_ANOMALIES)
    finally:
        store.close()
    known = state.watermark if state is not None and state.watermark is not None else now
    return Timeline(
        job=job_name,
        origin="from the store",
        zone=zone,
        runs=runs,
        anomalies=found,
        now=known,
        lo=lo,
        hi=hi,
        generated=now,
        anomaly_counts=counts,
    )


def write_html(timeline: Timeline, path: Path) -> Path:
    """Render ``timeline`` to ``path`` atomically (a temporary file renamed over it)."""
    text = render_html(timeline)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with temp.open("x", encoding="utf-8") as out:  # mode 0666 minus the umask
                out.write(text)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


# --------------------------------------------------------------------------- rendering


def render_html(timeline: Timeline) -> str:
    """The self-contained HTML page for ``timeline``."""
    guard = _asset("report_guard.js")
    script = _asset("report.js")
    css = _asset("report.css")
    for name, text in (("report_guard.js", guard), ("report.js", script), ("report.css", css)):
        if re.search(r"</(script|style)", text, re.IGNORECASE):  # pragma: no cover - asset bug
            raise AssertionError(f"{name} must not contain a closing </script> or </style>")
    data = embed_json(payload(timeline))
    title = f"Production timeline: {timeline.job}"
    parts = {
        "__SCRIPT_HASHES__": f"{_hash(guard)} {_hash(script)}",
        "__STYLE_HASH__": _hash(css),
        "__VERSION__": html.escape(__version__),
        "__TITLE__": html.escape(title),
        "__CSS__": css,
        "__GUARD__": guard,
        "__DATA__": data,
        "__JS__": script,
    }
    page = _asset("report.html")
    # one pass, so nothing substituted is ever scanned for markers again
    return re.sub("|".join(map(re.escape, parts)), lambda m: parts[m.group(0)], page)


def embed_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and the JavaScript
    line separators escaped as ``\\u003c`` etc. (still the same JSON value)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def payload(timeline: Timeline) -> dict[str, Any]:
    """The page's data: columnar, dictionary-encoded, times in whole seconds after ``t0``."""
    runs = timeline.runs
    found = timeline.anomalies.reindex(columns=ANOMALY_COLUMNS)
    zone = timeline.zone
    summary = timeline.summary()

    machines = sorted(
        {str(m) for m in runs["machine_code"].dropna()}
        | {str(m) for m in found["machine_code"].dropna()},
        key=_natural,
    )
    machine_index = {m: i for i, m in enumerate(machines)}
    products = [str(p) for p in runs["product_code"].dropna().value_counts().index]
    product_index = {p: i for i, p in enumerate(products)}

    stamps = [pd.Timestamp(timeline.now)]
    stamps += [pd.Timestamp(t) for t in (timeline.lo, timeline.hi) if t is not None]
    # the page's axis spans the data, but an order ending 9999-12-31 or starting 1900-01-01
    # (a "no date" value nobody declared) must not stretch it over centuries of empty days
    near = (pd.Timestamp(timeline.now) - AXIS_REACH, pd.Timestamp(timeline.now) + AXIS_REACH)
    for column in (runs["start"], runs["end"], found["ts"]):
        column = pd.to_datetime(column.dropna(), utc=True)
        column = column[(column >= near[0]) & (column <= near[1])]
        if len(column):
            stamps += [column.min(), column.max()]
    first, last = min(stamps), max(stamps)
    t0 = int(first.timestamp()) // 60 * 60

    def rel(column: pd.Series) -> list[int | None]:
        delta = pd.to_datetime(column, utc=True) - pd.Timestamp(t0, unit="s", tz=UTC)
        seconds = delta.dt.total_seconds().to_numpy()
        return [None if math.isnan(v) else int(v // 1) for v in seconds.tolist()]

    ordered = runs.assign(_m=runs["machine_code"].astype(str).map(machine_index)).sort_values(
        ["_m", "start"], kind="stable"
    )
    order_codes, orders = pd.factorize(ordered["order_code"].astype(str))
    flags_column = ordered["flags"] if "flags" in ordered else pd.Series(pd.NA, index=ordered.index)
    flag_codes, flags = pd.factorize(flags_column.astype("string"), use_na_sentinel=True)
    found = found.sort_values("ts", kind="stable", na_position="last").head(REPORT_ANOMALIES)
    found = found.assign(detail=local_times(found["detail"], zone))
    kind_codes, kinds = pd.factorize(found["kind"].astype(str))

    lo = timeline.lo or first.to_pydatetime()
    hi = timeline.hi or max(last, pd.Timestamp(timeline.now)).to_pydatetime()
    span = hi - lo
    cards = [
        ("runs", f"{summary.runs:,}"),
        ("open runs", f"{summary.open_runs:,}"),
        ("machines", f"{summary.machines:,}"),
        ("products", f"{summary.products:,}"),
        ("hours covered", f"{summary.hours:,.0f}"),
        ("anomalies", f"{summary.anomaly_count:,}"),
    ]
    if timeline.lo is None and timeline.hi is None:
        shown_range = "all runs"
    else:
        shown_range = (
            f"runs overlapping {_local(timeline.lo, zone) if timeline.lo else 'the beginning'} "
            f".. {_local(timeline.hi, zone) if timeline.hi else 'now'}"
        )
    capped = ""
    if summary.anomaly_count > len(found):
        capped = (
            f" \u00b7 lists the first {len(found):,} of {summary.anomaly_count:,} anomalies by "
            f"time (all of them are in the store and in the Parquet dataset, "
            f"anomalies/job={timeline.job})"
        )
    return {
        "v": 1,
        "job": timeline.job,
        "title": f"Production timeline: {timeline.job}",
        "subtitle": (
            f"{timeline.origin}: {shown_range} \u00b7 data known until "
            f"{_local(timeline.now, zone)} \u00b7 times in {zone.key} \u00b7 written "
            f"{_local(timeline.generated or datetime.now(UTC), zone)}{capped}"
        ),
        "zone": zone.key,
        "t0": t0,
        "now": int((pd.Timestamp(timeline.now).timestamp() - t0) // 1),
        "now_label": f"known until {_local(timeline.now, zone)[11:16]}",
        "lo": int((pd.Timestamp(lo).timestamp() - t0) // 1),
        "hi": int((pd.Timestamp(hi).timestamp() - t0) // 1),
        "days": _days(
            _shifted(lo, -(span + timedelta(days=2))),
            _shifted(hi, span + timedelta(days=2)),
            zone,
            t0,
        ),
        "machines": machines,
        "products": products,
        "orders": [str(o) for o in orders],
        "flags": [str(f) for f in flags],
        "runs": {
            "m": ordered["_m"].astype(int).tolist(),
            "o": order_codes.tolist(),
            "p": [-1 if pd.isna(p) else product_index[str(p)] for p in ordered["product_code"]],
            "s": rel(ordered["start"]),
            "e": rel(ordered["end"]),
            "f": flag_codes.tolist(),
            "x": _context_lines(ordered),
        },
        "anomalies": {
            "kinds": [str(k) for k in kinds],
            "k": kind_codes.tolist(),
            "m": [-1 if pd.isna(m) else machine_index[str(m)] for m in found["machine_code"]],
            "o": [None if pd.isna(o) else str(o) for o in found["order_code"]],
            "t": rel(found["ts"]),
            "d": [None if pd.isna(d) else str(d) for d in found["detail"]],
        },
        "summary": {
            "runs": summary.runs,
            "open_runs": summary.open_runs,
            "machines": summary.machines,
            "products": summary.products,
            "hours": round(summary.hours, 1),
            "anomalies": summary.anomalies,
        },
        "cards": cards,
    }


def _context_lines(runs: pd.DataFrame) -> list[str | None]:
    """Per run, the tooltip's extra lines: its phase (when not production), plant and fields
    (``good_qty  1,622``); None when there is nothing to add."""
    phases = runs["phase"] if "phase" in runs else pd.Series(pd.NA, index=runs.index)
    plants = runs["plant"] if "plant" in runs else pd.Series(pd.NA, index=runs.index)
    texts = runs["attributes"] if "attributes" in runs else pd.Series(pd.NA, index=runs.index)
    out: list[str | None] = []
    for phase, plant, text in zip(phases.tolist(), plants.tolist(), texts.tolist(), strict=True):
        lines = []
        if isinstance(phase, str) and phase != "production":
            lines.append(f"phase    {phase}")
        if isinstance(plant, str):
            lines.append(f"plant    {plant}")
        if isinstance(text, str):
            for name, value in json.loads(text).items():
                if value is None:
                    continue
                shown = (
                    ", ".join(map(str, value))
                    if isinstance(value, list)
                    else f"{value:,}"
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    else str(value)
                )
                lines.append(f"{name:<8} {shown}")
        out.append("\n".join(lines) or None)
    return out


_UTC_TEXT = r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)\+00:00"


def local_times(details: pd.Series, zone: ZoneInfo) -> pd.Series:
    """Anomaly details with their UTC times (``2026-03-04 06:00:00+00:00``, as the fold writes
    them) shown in the table's zone, UTC beside: ``2026-03-04 07:00:00 (06:00:00 UTC)``. For the
    rows a page or preview shows (a call per matching detail)."""
    if zone.key == "UTC" or details.empty:
        return details

    def local(match: re.Match[str]) -> str:
        utc = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC)
        here = utc.astimezone(zone)
        shown = here.isoformat(sep=" ", timespec="microseconds" if utc.microsecond else "seconds")
        same_day = here.date() == utc.date()
        clock = utc.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")
        return f"{shown[:-6]} ({clock} UTC)"

    text = details.astype("string")
    return text.str.replace(_UTC_TEXT, local, regex=True)


def _days(lo: datetime, hi: datetime, zone: ZoneInfo, t0: int) -> list[list[int]]:
    """Local midnights from ``lo`` to ``hi``: ``[seconds after t0, weekday (Mon 0), first of the
    month (1/0), day number, ISO week number]`` (the page's axis, weekends and ticks)."""
    day = lo.astimezone(zone).date()
    last = hi.astimezone(zone).date() + timedelta(days=1)
    out: list[list[int]] = []
    while day <= last:
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        out.append(
            [
                int(midnight.timestamp()) - t0,
                day.weekday(),
                int(day.day == 1),
                day.toordinal(),
                (day.toordinal() - date(2001, 1, 1).toordinal()) // 7,  # 2001-01-01 was a Monday
            ]
        )
        day += timedelta(days=1)
    return out


def _shifted(value: datetime, delta: timedelta) -> datetime:
    """``value + delta``, stopping at the first or last instant a datetime holds (a day short,
    so the local midnights around it exist too)."""
    first = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
    last = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
    try:
        return min(max(value + delta, first), last)
    except OverflowError:
        return first if delta < timedelta(0) else last


def _asset(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _natural(text: str) -> list[Any]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


def _local(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
