"""``etl preview``: what a job would derive, without changing anything.

The dry run reads the source exactly as ``etl run`` would (the same SELECT, the same window, the
same mapping and fold, runs carried over from the store) and stops before the store: no runs or
anomalies written, no watermark moved, no audit row, no lock, no Parquet. The store is opened
read-only (or not at all when it does not exist yet), so this is enforced, not just intended.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from etl.commands.report import Timeline, local_times
from etl.config.durations import format_duration, parse_when, resolve_when
from etl.config.models import Job, Project
from etl.errors import EtlError, UsageError
from etl.pipeline.attributes import parse
from etl.pipeline.run import check_usable, derive, next_window, reader_for, start_utc
from etl.pipeline.structures import structure_for
from etl.redact import redact
from etl.sources.reader import WINDOW_MARGIN, Window
from etl.sources.sql.arrow import FetchChoice, choose
from etl.sources.sql.engine import open_source
from etl.sources.sql.query import build_query
from etl.store.db import open_read_only

#: How the mapping's event kinds are shown, in this order.
KIND_LABELS = {"START": "START", "END": "END", "IGNORE": "ignored", "UNKNOWN": "unknown"}
EXAMPLES = 3


@dataclass
class Preview:
    """The outcome of a dry run of one job (nothing of it has been stored)."""

    job: Job
    window: Window
    basis: list[str]  # how the window was chosen, one line per bound
    source_now: datetime
    sql: str
    parameters: dict[str, Any]
    rows_read: int
    codes: list[tuple[str, str, int]]  # (source code, START/END/IGNORE/UNKNOWN, rows)
    runs: pd.DataFrame
    anomalies: pd.DataFrame
    carried: int  # runs carried in from the store because they were open at the window's start
    limit: int = 20
    notes: list[str] = field(default_factory=list)

    @property
    def zone(self) -> ZoneInfo:
        """The plant's time zone (the connector's)."""
        return self.job.connector.zone

    def anomaly_counts(self) -> dict[str, int]:
        """Anomalies by kind."""
        return dict(sorted(Counter(self.anomalies["kind"].astype(str)).items()))

    def sample(self) -> pd.DataFrame:
        """The first ``limit`` runs by start (then machine)."""
        ordered = self.runs.sort_values(["start", "machine_code"], kind="stable")
        return ordered.head(self.limit)

    def timeline(self) -> Timeline:
        """The derived runs as a report timeline (``etl preview --html``)."""
        return Timeline(
            job=self.job.name,
            origin="preview, a dry run (nothing of this is stored)",
            zone=self.zone,
            runs=self.runs,
            anomalies=self.anomalies,
            now=self.window.hi,
            lo=self.window.lo,
            hi=self.window.hi,
            generated=datetime.now(UTC),
        )

    def field_totals(self) -> list[str]:
        """``fields  good 12,345 (sum over 40 runs)``: the summed and counted fields over all
        derived runs (not only the sample)."""
        mapping = self.job.mapping
        summed = [n for n, f in mapping.fields.items() if f.agg in ("sum", "count")]
        if not summed or "attributes" not in self.runs or self.runs.empty:
            return []
        values = parse(self.runs["attributes"], mapping)
        totals = ", ".join(f"{name} {_field_cell(float(values[name].sum()))}" for name in summed)
        return [f"  fields over all {len(self.runs):,} runs: {totals}"]

    def lines(self) -> list[str]:
        """The human report, line by line."""
        job, zone = self.job, self.zone
        out = [
            f"preview of {job.name}: {job.mapping.structure} from mappings/{job.mapping_name}.yaml "
            f"via connectors/{job.connector_name}.yaml ({job.connector.dialect or job.connector.kind}); "
            "dry run: nothing is written",
            "",
            f"window    {_utc(self.window.lo)} .. {_utc(self.window.hi)}  "
            f"({_local(self.window.lo, zone)} .. {_local(self.window.hi, zone)} {zone.key})",
        ]
        out += [f"          {line}" for line in self.basis]
        out += [
            "",
            f"SQL ({job.connector.dialect}; window bounds widened by "
            f"{format_duration(WINDOW_MARGIN)} of wall clock, cut exactly in UTC after "
            "reading):"
            if job.connector.kind == "sql"
            else f"{job.connector.kind} source (the window is cut exactly in UTC after reading):",
        ]
        out += [f"  {line}" for line in self.sql.strip().splitlines()]
        if self.parameters:
            params = ", ".join(f"{k}={v!r}" for k, v in self.parameters.items())
            out.append(f"  parameters: {params}")
        out += ["", f"rows read  {self.rows_read:,}"]
        if structure_for(job.mapping).has_codes:
            out += ["", "rows per source event code:"]
            table = [
                [_cell(code), KIND_LABELS.get(kind, kind), f"{rows:,}"]
                for code, kind, rows in self.codes
            ]
            out += _indent(
                _table(["code", "maps to", "rows"], table or [["-", "-", "0"]], right={2})
            )
        summary = self.timeline().summary()
        out += [
            "",
            f"runs  {len(self.runs):,} ({summary.open_runs:,} open) on {summary.machines:,} "
            f"machine(s), {summary.products:,} product(s), {summary.hours:,.1f} h covered"
            + (f"; {self.carried:,} carried in from the store" if self.carried else ""),
        ]
        sample = self.sample()
        if len(sample):
            shown = f"first {len(sample)} by start" if len(sample) < len(self.runs) else "all"
            out.append(
                f"  {shown}, times in {zone.key}"
                + ("; --limit N shows more" if len(sample) < len(self.runs) else "")
            )
            rows = []
            has_flags = "flags" in sample and bool(sample["flags"].notna().any())
            has_phase = "phase" in sample and bool(
                (sample["phase"].fillna("production") != "production").any()
            )
            fields = list(job.mapping.fields)
            values = (
                parse(sample["attributes"], job.mapping)
                if fields and "attributes" in sample
                else pd.DataFrame(index=range(len(sample)), columns=fields)
            )
            for at, run in enumerate(sample.itertuples(index=False)):
                end = run.end
                row = [
                    _cell(run.machine_code),
                    _cell(run.order_code),
                    _cell(run.product_code),
                    _local(run.start, zone, seconds=True),
                    "open" if pd.isna(end) else _local(end, zone, seconds=True),
                    _span(self.window.hi - run.start if pd.isna(end) else end - run.start)
                    + ("+" if pd.isna(end) else ""),
                ]
                if has_phase:
                    row.append(_cell(run.phase))
                row += [_field_cell(values[name].iloc[at]) for name in fields]
                if has_flags:
                    flags = run.flags
                    row.append(_cell(flags))
                rows.append(row)
            header = ["machine", "order", "product", "start", "end", "duration"]
            header += ["phase"] if has_phase else []
            header += fields
            right = {5, *range(len(header) - len(fields), len(header))}
            out += _indent(_table(header + (["flags"] if has_flags else []), rows, right=right))
        out += self.field_totals()
        counts = self.anomaly_counts()
        total = sum(counts.values())
        out += ["", f"anomalies  {total:,}" + ("" if total else " (none)")]
        for kind, count in counts.items():
            out.append(f"  {kind}  {count:,}")
            examples = (
                self.anomalies[self.anomalies["kind"] == kind]
                .sort_values("ts", kind="stable", na_position="last")
                .head(EXAMPLES)
            )
            examples = examples.assign(detail=local_times(examples["detail"], zone))
            rows = []
            for found in examples.itertuples(index=False):
                rows.append(
                    [
                        "(no time)" if pd.isna(found.ts) else _local(found.ts, zone, seconds=True),
                        _cell(found.machine_code),
                        _cell(found.order_code),
                        _cell(found.detail),
                    ]
                )
            out += _indent(_table(None, rows), 4)
        out += [f"note: {note}" for note in self.notes]
        return out


def preview(
    project: Project,
    job_name: str,
    since: str | None = None,
    until: str | None = None,
    limit: int = 20,
) -> Preview:
    """Dry-run ``job_name``: derive its runs for the window the next ``etl run`` would use (or
    ``since``/``until``), writing nothing anywhere."""
    job = project.job(job_name)
    project.require_env([job_name])
    if limit < 0:
        raise UsageError("--limit must be 0 or more")
    zone = job.connector.zone
    since_at = parse_when(since, zone, "--since") if since else None
    until_at = parse_when(until, zone, "--until") if until else None
    store = open_read_only(project.spec.store, project.root, project.secrets)
    try:
        state = store.state(job_name) if store is not None else None
        first = start_utc(job)
        basis: list[str] = []
        clock: list[datetime] = []

        def window_for(now: datetime) -> Window:
            clock.append(now)
            if since_at is not None:
                lo = resolve_when(since_at, now)
                basis.append(f"lo: --since {since}")
            elif state is not None and state.watermark is not None:
                lo = next_window(job, state, now).lo
                basis.append(
                    f"lo: as the next 'etl run': watermark {_utc(state.watermark)} - reread "
                    f"{format_duration(job.reread)}"
                    + (" (not before start_from)" if lo == first else "")
                )
            else:
                lo = first
                basis.append(f"lo: as the next 'etl run': start_from {_utc(first)} (first run)")
            if until_at is not None:
                hi = resolve_when(until_at, now)
                basis.append(f"hi: --until {until}")
            else:
                hi = now - job.safety_lag
                basis.append(
                    f"hi: source clock {_utc(now)} - safety_lag {format_duration(job.safety_lag)}"
                )
            if hi <= lo:
                raise UsageError(
                    f"the window is empty: {_utc(lo)} .. {_utc(hi)}",
                    hint="--since must be before --until (and before the source's clock)",
                )
            return Window(lo=lo, hi=hi)

        reader = reader_for(project, job)
        derived = derive(project, job, window_for, store, reader=reader)
    finally:
        if store is not None:
            store.close()
    window = derived.window
    order = {kind: i for i, kind in enumerate(KIND_LABELS)}
    codes = sorted(
        ((code, kind, count) for (code, kind), count in derived.codes.items()),
        key=lambda item: (order.get(item[1], 9), _code_key(item[0])),
    )
    if job.connector.kind == "sql":
        sql, parameters, fetch = _compiled(project, job, window, getattr(reader, "fetched", None))
    else:  # the requests sent or the files read, as the reader says (etl/sources/)
        sql, parameters, fetch = "\n".join(getattr(reader, "described", list)()), {}, ""
    notes = [fetch] if fetch else []
    if store is None:
        notes.append("the store does not exist yet: the window is the first run's, nothing carried")
    try:
        check_usable(job, derived)
    except EtlError as exc:  # what 'etl run' would refuse: said here, where the rows are shown
        notes.append(f"'etl run' would refuse this window (exit 4): {exc.message}")
    return Preview(
        job=job,
        window=window,
        basis=basis,
        source_now=clock[0] if clock else window.hi,
        sql=redact(sql, project.secrets),
        parameters=parameters,
        rows_read=derived.rows_read,
        codes=codes,
        runs=derived.runs,
        anomalies=derived.anomalies.frame(),
        carried=derived.carried,
        limit=limit,
        notes=notes,
    )


def _compiled(
    project: Project, job: Job, window: Window, delivered: FetchChoice | None = None
) -> tuple[str, dict[str, Any], str]:
    """The SELECT as the source's dialect sends it (IN lists expanded), its parameters in the
    order the placeholders take them, and the path that delivered the rows (``delivered``; None:
    the one the connector would take); '' for SQLAlchemy by the connector's own choice."""
    query = build_query(job.mapping, window, job.connector.zone)
    source = open_source(job.connector_name, job.connector, project.root, project.secrets)
    try:  # the engine's dialect, without connecting
        compiled = query.compile(
            dialect=source.engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        planned = choose(source)
    finally:
        source.close()
    choice = delivered or planned
    fetch = ""
    if choice.path is None and planned.path is not None:  # fetch: auto fell back
        fetch = f"rows read through {choice.label}"
    if choice.path is not None:
        fetch = f"rows read through {choice.label}"
        if not choice.path.binds:
            fetch += ", which gets this SELECT with the parameters as quoted literals"
    params = compiled.params
    names = list(dict.fromkeys(compiled.positiontup or params))
    return str(compiled), {name: _plain(params[name]) for name in names}, fetch


def _field_cell(value: Any) -> str:
    """A run attribute for the terminal: numbers plain, lists comma-joined, NULL empty."""
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()  # a NumPy scalar
    if isinstance(value, list | tuple) or (
        hasattr(value, "__len__") and not isinstance(value, str)
    ):
        return _cell(",".join(str(item) for item in list(value)))
    if isinstance(value, float) and not pd.isna(value) and value.is_integer():
        return f"{int(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return _cell(value)


def _cell(value: Any) -> str:
    """Text for the terminal: control characters from the source shown escaped, not executed."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = str(value)
    return (
        text
        if text.isprintable()
        else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    )


def _code_key(code: str) -> tuple[int, float, str]:
    try:
        number = float(code)
    except ValueError:
        return (1, 0.0, code)
    return (0, number, code) if math.isfinite(number) else (1, 0.0, code)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return value


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _local(value: Any, zone: ZoneInfo, seconds: bool = False) -> str:
    stamp = pd.Timestamp(value).tz_convert(zone)
    return stamp.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _span(delta: Any) -> str:
    seconds = int(pd.Timedelta(delta).total_seconds())
    if seconds < 0:
        return "-" + _span(timedelta(seconds=-seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _indent(lines: list[str], width: int = 2) -> list[str]:
    return [" " * width + line for line in lines]


def _table(
    header: list[str] | None, rows: list[list[str]], right: set[int] | None = None
) -> list[str]:
    """An aligned text table (two spaces between columns; columns in ``right`` right-aligned)."""
    right = right or set()
    every = ([header] if header else []) + rows
    if not every:
        return []
    widths = [max(len(row[i]) for row in every) for i in range(len(every[0]))]

    def line(row: list[str]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return ("  ".join(cells)).rstrip()

    out = [line(header)] if header else []
    if header:
        out.append("  ".join("-" * w for w in widths))
    return out + [line(row) for row in rows]
