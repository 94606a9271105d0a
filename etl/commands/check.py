"""``etl check CONNECTOR``: can booking-etl reach the source, and what may its account do there?

The report is meant to be handed to the customer's database administrator: server and driver, the
server clock against this host's, the session's time zone and read-only state, every privilege that
lets the account write, change structure, execute code or administer, whether each table a job maps
is readable, and the GRANT statements for a least-privilege account for exactly those tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlglot
import sqlglot.expressions as exp
from sqlalchemy.engine import Connection

from etl.config.models import MappingSpec, Project
from etl.config.queries import check_custom_query
from etl.errors import EtlError, SourceError
from etl.redact import redact
from etl.sources.sql.arrow import choose, record_batches
from etl.sources.sql.dialects import WRITE_KINDS, Privilege, TableRef, sqlglot_name
from etl.sources.sql.engine import Retry, Source, open_connector
from etl.sources.sql.query import build_query, check_columns

CLOCK_WARN_SECONDS = 60.0
_REFUSED = ": source.query: refused"
READER_ACCOUNT = "etl_reader"


@dataclass
class TableCheck:
    """Whether one mapped table (or custom query) can be read with the connector's account."""

    mapping: str
    jobs: list[str]
    source: str  # "BDE.BUCHUNGEN" or "(custom query)"
    readable: bool
    detail: str
    enabled: bool = True  # some enabled job uses the mapping

    @property
    def failing(self) -> bool:
        """Unreadable, and an enabled job reads it: ``etl check`` exits 4, as ``etl run`` would.
        A mapping only disabled jobs use (``etl init``'s starter) is reported, not counted."""
        return not self.readable and self.enabled

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "mapping": self.mapping,
            "jobs": self.jobs,
            "source": self.source,
            "readable": self.readable,
            "enabled": self.enabled,
            "detail": self.detail,
        }


@dataclass
class CheckReport:
    """Everything ``etl check`` found out about one connector."""

    connector: str
    dialect: str
    target: str
    driver: str
    connect_seconds: float
    product: str
    version: str
    server_clock: datetime
    host_clock: datetime
    session_timezone: str
    read_only_session: str
    account: str
    plant_timezone: str = "UTC"
    plant_timezone_set: bool = True  # the connector names it (else naive times are read as UTC)
    privileges: list[Privilege] = field(default_factory=list)
    tables: list[TableCheck] = field(default_factory=list)
    grant_account: str = READER_ACCOUNT
    grants: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fetch: str = ""  # the extraction path: "arrow (ADBC PostgreSQL driver 1.13.0)"
    fetch_error: str = ""  # fetch: arrow cannot be honoured: jobs fail, so does ``etl check``
    layers: list[str] = field(default_factory=list)  # what each read-only layer did

    @property
    def clock_offset_s(self) -> float:
        """Server clock minus host clock, in seconds."""
        return (self.server_clock - self.host_clock).total_seconds()

    refused_config: list[str] = field(default_factory=list)  # refusals that broke a job

    @property
    def refused(self) -> list[str]:
        """What the read-only allowlists refused in this connector's jobs (they would not run)."""
        found = [t.detail for t in self.tables if not t.readable and _REFUSED in t.detail]
        return list(dict.fromkeys([*self.refused_config, *found]))

    @property
    def writes(self) -> list[Privilege]:
        """The privileges that let the account write, change structure or administer."""
        return [p for p in self.privileges if p.kind in WRITE_KINDS]

    @property
    def can_write(self) -> bool:
        """Whether the account could change the source (``--strict`` refuses it)."""
        return bool(self.writes)

    @property
    def existing_account(self) -> bool:
        """Whether the GRANTs are for the connector's own account (else a new one)."""
        return self.grant_account == self.account

    @property
    def where(self) -> str:
        """The connector file."""
        return f"connectors/{self.connector}.yaml"

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "connector": self.connector,
            "dialect": self.dialect,
            "target": self.target,
            "driver": self.driver,
            "fetch": self.fetch,
            "fetch_error": self.fetch_error,
            "connect_seconds": round(self.connect_seconds, 3),
            "server": {"product": self.product, "version": self.version},
            "server_clock": self.server_clock.isoformat(),
            "host_clock": self.host_clock.isoformat(),
            "clock_offset_s": round(self.clock_offset_s, 3),
            "session_timezone": self.session_timezone,
            "plant_timezone": self.plant_timezone,
            "plant_timezone_set": self.plant_timezone_set,
            "read_only_session": self.read_only_session,
            "account": self.account,
            "can_write": self.can_write,
            "privileges": [p.as_dict() for p in self.privileges],
            "tables": [t.as_dict() for t in self.tables],
            "grant_account": self.grant_account,
            "existing_account": self.existing_account,
            "grants": self.grants,
            "notes": self.notes,
            "warnings": self.warnings,
            "read_only_layers": self.layers,
        }


def check_connector(project: Project, name: str, retry: Retry | None = None) -> CheckReport:
    """Connect with the connector's timeout and collect the report (raises SourceError if it cannot)."""
    source = open_connector(project, name, retry=retry)
    dialect = source.dialect
    notes = dialect.driver_notes(source.spec)
    try:
        started = time.monotonic()
        with source.connect() as conn:
            seconds = time.monotonic() - started
            before = datetime.now(UTC)
            server_clock = source.now_utc(conn)
            after = datetime.now(UTC)
            host_clock = before + (after - before) / 2
            warnings: list[str] = []

            def ask(what: str, question: Any, default: Any) -> Any:
                try:
                    return question(conn)
                except EtlError as exc:
                    warnings.append(f"could not read {what}: {exc.message}")
                except sa.exc.DBAPIError as exc:
                    warnings.append(f"could not read {what}: {_first_line(exc, source)}")
                conn.rollback()
                return default

            product, version = ask(
                "the server version", dialect.server_version, (dialect.product, "unknown")
            )
            report = CheckReport(
                connector=name,
                dialect=source.spec.sql_dialect,
                target=source.display,
                driver=ask("the driver", dialect.driver_description, "unknown"),
                connect_seconds=seconds,
                product=product,
                version=version,
                server_clock=server_clock,
                host_clock=host_clock,
                session_timezone=ask("the session time zone", dialect.session_timezone, "unknown"),
                read_only_session=ask(
                    "the session's read-only state", dialect.session_read_only, "unknown"
                ),
                account=ask("the account", dialect.current_user, "unknown"),
                plant_timezone=source.spec.timezone,
                plant_timezone_set="timezone" in source.spec.model_fields_set,
                notes=notes,
                warnings=warnings,
                fetch=_fetch(source, warnings),
            )
            if report.fetch.startswith("none (fetch: arrow"):
                report.fetch_error = warnings[-1]
            tables = _mapped_tables(project, name)
            refs = list(dict.fromkeys(ref for _, _, refs in tables for ref in refs))
            report.privileges = ask("the privileges", lambda c: dialect.privileges(c, refs), [])
            report.tables = [_check_table(conn, source, project, m, jobs) for m, jobs, _ in tables]
            # no GRANT for a table that is missing where only disabled jobs look (the starter's)
            idle = {t.mapping for t in report.tables if not t.readable and not t.enabled}
            refs = list(dict.fromkeys(ref for m, _, rs in tables if m not in idle for ref in rs))
            report.refused_config = _refused_jobs(project, name)
            report.layers = _layers(conn, source, project, report)
            _probe_fetch(conn, source, project, report)
            admin = any(p.kind == "admin" for p in report.privileges)
            plain = report.account.split("@")[0]
            report.grant_account = (
                READER_ACCOUNT
                if admin
                or plain in dialect.admin_accounts
                or plain.upper() in dialect.admin_accounts
                else report.account
            )
            if report.account == "unknown" or report.account.startswith("("):
                report.grant_account = READER_ACCOUNT
            grants = ask(
                "the GRANT statements",
                lambda c: dialect.grant_statements(c, report.grant_account, refs),
                [],
            )
            if report.existing_account:
                # the account exists: take back what lets it write, then grant what it reads
                revokes = [p.fix for p in report.writes if _is_statement(p.fix)]
                grants = list(dict.fromkeys(revokes)) + [
                    g for g in grants if not g.upper().startswith("CREATE ")
                ]
            report.grants = grants
    finally:
        source.close()
    if abs(report.clock_offset_s) > CLOCK_WARN_SECONDS:
        report.warnings.append(
            f"the server clock is {abs(report.clock_offset_s):.0f}s "
            f"{'ahead of' if report.clock_offset_s > 0 else 'behind'} this host's: sync windows "
            "follow the server clock, so compare times with the server, not with this host"
        )
    if not tables:
        report.warnings.append(f"no job uses connector {name!r}: no tables were checked")
    return report


def _refused_jobs(project: Project, connector: str) -> list[str]:
    """The read-only refusals that kept a job on ``connector`` from loading (a custom query off
    the allowlist): the job does not run, and ``etl check`` says why."""
    out: list[str] = []
    for job, problems in sorted(project.broken.items()):
        doc = project.files.get(f"jobs/{job}")
        data = doc.data if doc is not None and isinstance(doc.data, dict) else {}
        if data.get("connector") == connector:
            out += [p for p in problems if _REFUSED in p]
    return out


def _layers(conn: Connection, source: Source, project: Project, report: CheckReport) -> list[str]:
    """What the read-only layers checked and refused, for the report (docs/read-only.md)."""
    spec = source.spec
    given = len(spec.options) + (len(source.engine.url.query) if spec.url is not None else 0)
    out = [
        f"connector options: {given} given, all on the {spec.dialect} allowlist "
        "(a refused one stops the config from loading)",
    ]
    probe = source.dialect.read_only_probe(conn)
    out.append(
        f"session: the server answered read-only to {probe} after setup; every extraction asks "
        "again and refuses to read otherwise"
        if probe is not None
        else f"session: {source.dialect.product} has no read-only session to verify"
    )
    refused = report.refused
    queries = [t for t in report.tables if t.source == "(custom query)"]
    out.append(
        f"custom queries: {len(queries) + len(report.refused_config)} checked against the "
        f"allowlist, {len(refused)} refused" + "".join(f"; {r}" for r in refused)
    )
    for table in queries:
        allowed = project.mappings[table.mapping].source.allow_functions
        if allowed:
            out.append(
                f"mappings/{table.mapping}.yaml allows functions beyond the built-in pure ones "
                f"(allow_functions): {', '.join(allowed)}"
            )
    return out


def _fetch(source: Source, warnings: list[str]) -> str:
    """How rows will be read; a ``fetch: arrow`` without its driver is reported (and the
    caller makes it the check's failure, ``fetch_error``); ``auto`` falls back silently."""
    try:
        return choose(source).label
    except SourceError as exc:
        warnings.append(exc.message)
        return "none (fetch: arrow, driver missing)"


def _probe_fetch(conn: Connection, source: Source, project: Project, report: CheckReport) -> None:
    """Read no rows of the first readable mapped table through the Arrow path: does it work?"""
    try:
        choice = choose(source)
    except SourceError:
        return
    readable = [t for t in report.tables if t.readable]
    if choice.path is None or not readable:
        return
    mapping = project.mappings[readable[0].mapping]
    query = build_query(mapping, None, source.spec.zone).where(sa.false())
    try:
        list(record_batches(source, choice, conn, query, {}, 1, f"mappings/{readable[0].mapping}"))
    except EtlError as exc:
        report.fetch += ": FAILED"
        fallback = "rows come through SQLAlchemy" if source.spec.fetch == "auto" else "jobs fail"
        report.warnings.append(f"the Arrow path failed ({fallback}): {exc.message}")
        if source.spec.fetch == "arrow":
            report.fetch_error = f"fetch: arrow, but the Arrow path failed: {exc.message}"


def _mapped_tables(project: Project, connector: str) -> list[tuple[str, list[str], list[TableRef]]]:
    """(mapping, jobs, tables it reads) for every mapping a job on ``connector`` uses."""
    by_mapping: dict[str, list[str]] = {}
    for job in sorted(project.jobs.values(), key=lambda j: j.name):
        if job.connector_name == connector:
            by_mapping.setdefault(job.mapping_name, []).append(job.name)
    dialect = project.connectors[connector].sql_dialect
    out = []
    for mapping_name, jobs in sorted(by_mapping.items()):
        mapping = project.mappings[mapping_name]
        out.append((mapping_name, jobs, tables_read(mapping, dialect)))
    return out


def tables_read(mapping: MappingSpec, dialect: str) -> list[TableRef]:
    """The tables a mapping reads: its table, or those its custom query names (not its CTEs)."""
    if mapping.source.table is not None:
        return [TableRef(mapping.source.schema_, mapping.source.table)]
    try:
        tree = sqlglot.parse_one(mapping.source.query or "", read=sqlglot_name(dialect))
    except sqlglot.errors.SqlglotError:  # its own check reports it; the others go on
        return []
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    refs = [
        TableRef(table.db or None, table.name)
        for table in tree.find_all(exp.Table)
        if table.name and table.name not in ctes
    ]
    return list(dict.fromkeys(refs))


def _check_table(
    conn: Connection, source: Source, project: Project, mapping_name: str, jobs: list[str]
) -> TableCheck:
    mapping = project.mappings[mapping_name]
    where = f"mappings/{mapping_name}.yaml"
    described = mapping.source.describe()
    enabled = any(project.jobs[job].spec.enabled for job in jobs)
    try:
        if mapping.source.query is not None:
            check_custom_query(
                mapping.source.query, source.spec.sql_dialect, where, mapping.source.allow_functions
            )
        columns = check_columns(conn, mapping, where)
        query = build_query(mapping, None, source.spec.zone).where(sa.false())
        conn.execute(query).all()
    except EtlError as exc:
        conn.rollback()
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, sa.exc.DBAPIError) and source.dialect.classify(cause) == "permission":
            exc = source.denied(cause)
        return TableCheck(mapping_name, jobs, described, False, exc.message, enabled)
    except sa.exc.DBAPIError as exc:
        conn.rollback()
        detail = _first_line(exc, source)
        if source.dialect.classify(exc) == "permission":
            detail = source.denied(exc).message
        return TableCheck(mapping_name, jobs, described, False, detail, enabled)
    return TableCheck(
        mapping_name,
        jobs,
        described,
        True,
        f"readable ({len(columns)} columns, mapped ones present)",
        enabled,
    )


def _is_statement(text: str) -> bool:
    return text.upper().startswith(("REVOKE ", "ALTER ")) and text.rstrip().endswith(";")


def _first_line(exc: sa.exc.DBAPIError, source: Source) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return redact(lines[0] if lines else type(exc).__name__, source.secrets)


_KIND_LABEL = {
    "write": "WRITE",
    "ddl": "DDL",
    "admin": "ADMIN",
    "execute": "EXECUTE",
    "read": "READ",
}


def format_report(report: CheckReport) -> str:
    """The human report, as ``etl check`` prints it."""
    offset = report.clock_offset_s
    lines = [
        f"connector:  {report.where} ({report.dialect})",
        f"target:     {report.target}",
        f"driver:     {report.driver} (connected in {report.connect_seconds:.2f}s)",
    ]
    lines += [f"            {note}" for note in report.notes]
    lines += [
        f"fetch:      {report.fetch}",
        f"server:     {report.product} {report.version}",
        f"clock:      {report.server_clock.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}Z on the server, "
        f"{offset:+.3f}s from this host",
        f"time zone:  session {report.session_timezone}; plant {report.plant_timezone} "
        + (
            "(the connector's timezone: naive timestamps are read in it)"
            if report.plant_timezone_set
            else "(no timezone in the connector: naive timestamps are read as UTC)"
        ),
        f"read-only:  {report.read_only_session}",
        f"account:    {report.account}",
        "",
    ]
    writes = report.writes
    others = [p for p in report.privileges if p.kind not in WRITE_KINDS]
    if writes:
        lines.append(f"privileges that let the account change the database ({len(writes)}):")
        lines += _privilege_lines(writes)
    else:
        lines.append("privileges that let the account change the database: none found")
    if others:
        lines.append("other privileges worth knowing:")
        lines += _privilege_lines(others)
    lines.append("")
    if report.tables:
        lines.append("mapped tables (mapping <- jobs: source):")
        for table in report.tables:
            state = "ok  " if table.readable else "FAIL" if table.enabled else "off "
            idle = (
                ""
                if table.readable or table.enabled
                else " (only disabled jobs use it: not counted)"
            )
            lines.append(
                f"  {state} {table.mapping} <- {', '.join(table.jobs)}: {table.source}: "
                f"{table.detail}{idle}"
            )
        lines.append("")
    if report.grants:
        lines.append(
            f"to make {report.grant_account!r} a least-privilege reader of these tables "
            "(for the DBA):"
            if report.existing_account
            else f"a least-privilege account {report.grant_account!r} for these tables "
            "(for the DBA):"
        )
        lines += [f"  {statement}" for statement in report.grants]
        lines.append("")
    lines += [f"warning: {w}" for w in report.warnings if w != report.fetch_error]
    if report.fetch_error:
        lines.append(f"error: {report.fetch_error} (jobs on this connector fail)")
    unreadable = [t for t in report.tables if t.failing]
    failing = f"; {len(unreadable)} mapped table(s) NOT readable" if unreadable else ""
    if report.layers:
        lines.append("read-only layers (defence in depth; the grants are the boundary):")
        lines += [f"  {layer}" for layer in report.layers]
        lines.append("")
    if report.can_write:
        lines.append(
            f"verdict: the account CAN WRITE ({len(writes)} privilege(s) above). The grants are "
            "the security boundary: booking-etl's layers refuse what they recognize, but only "
            f"a read-only account guarantees that nothing changes; 'etl check --strict' fails "
            f"on this{failing}."
        )
    else:
        lines.append(f"verdict: read-only account{failing}")
    return "\n".join(lines)


def _privilege_lines(privileges: list[Privilege]) -> list[str]:
    out = []
    for p in privileges:
        via = f" (via {p.via})" if p.via else ""
        out.append(f"  {_KIND_LABEL[p.kind]:<7} {p.privilege} on {p.on}{via}")
        if p.fix:
            out.append(f"          fix: {p.fix}")
    return out
