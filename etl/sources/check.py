"""``etl check`` for file-drop and HTTP connectors: list each mapped table's files (and read the
first one), or fetch each mapped endpoint's first page, and say what can be read."""

from __future__ import annotations

from dataclasses import dataclass, field

from etl.config.models import Project
from etl.errors import EtlError
from etl.redact import redact


@dataclass
class TableCheck:
    """One mapped table on the connector: readable or not, and why."""

    mapping: str
    jobs: list[str]
    source: str  # the glob or the endpoint
    readable: bool
    detail: str


@dataclass
class SourceCheck:
    """What ``etl check`` found out about one file-drop or HTTP connector."""

    connector: str
    kind: str
    where: str  # the folder, prefix or base URL
    tables: list[TableCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The report for ``--json``."""
        return {
            "connector": self.connector,
            "kind": self.kind,
            "where": self.where,
            "tables": [t.__dict__ for t in self.tables],
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        """The human report."""
        out = [f"connector:  connectors/{self.connector}.yaml ({self.kind}: {self.where})"]
        for t in self.tables:
            state = "ok  " if t.readable else "FAIL"
            out.append(f"  {state} {t.mapping} <- {', '.join(t.jobs)}: {t.source}: {t.detail}")
        out += [f"warning: {w}" for w in self.warnings]
        return out


def check_source(project: Project, name: str) -> SourceCheck:
    """Check connector ``name`` (kind files or http) against every mapping a job uses on it."""
    from etl.sources.registry import reader_for

    spec = project.connectors[name]
    if spec.files is not None:
        where = spec.files.location
    else:
        assert spec.http is not None
        where = spec.http.base_url
    report = SourceCheck(connector=name, kind=spec.kind, where=where)
    by_mapping: dict[str, list[str]] = {}
    for job_name, job in sorted(project.jobs.items()):
        if job.connector_name == name:
            by_mapping.setdefault(job.mapping_name, []).append(job_name)
    if not by_mapping:
        report.warnings.append(f"no job uses connector {name!r}: nothing was checked")
    for mapping, jobs in by_mapping.items():
        job = project.jobs[jobs[0]]
        reader = reader_for(project, job)
        try:
            detail, source = _probe(reader)
            report.tables.append(TableCheck(mapping, jobs, source, True, detail))
        except EtlError as exc:
            message = redact(exc.message, project.secrets)
            if exc.exit_code == 3:  # unreachable: as 'etl run' fails
                raise
            report.tables.append(TableCheck(mapping, jobs, _source_of(reader), False, message))
    return report


def _source_of(reader: object) -> str:
    table = getattr(reader, "table", None)
    if table is not None:
        return f"files {table.glob}"
    endpoint = getattr(reader, "endpoint", None)
    return f"GET {endpoint.path}" if endpoint is not None else "?"


def _probe(reader: object) -> tuple[str, str]:
    """(what was found, where) for one reader: the files listed and the first one read, or the
    first page fetched."""
    from etl.sources.files.formats import read_file
    from etl.sources.files.reader import FilesReader
    from etl.sources.http.reader import HttpReader, records_frame
    from etl.sources.rows import time_columns, wanted_columns

    if isinstance(reader, FilesReader):
        with reader.open() as reading:
            listed = reading.drop.list(reader.table.glob)
            files = [f for f in listed if reading.drop.settled(f, reading.clock)]
            wanted = wanted_columns(reader.mapping)
            detail = f"{len(files)} file(s) ready"
            if len(listed) > len(files):
                detail += f", {len(listed) - len(files)} still being written"
            if files:
                first = files[0]
                name = f"{reading.drop.display}/{first.path}"
                frame = read_file(
                    reading.drop.read(first.path),
                    name,
                    reader.table,
                    wanted,
                    time_columns(reader.mapping),
                )
                detail += f"; {first.path}: {len(frame):,} rows, the mapped columns all there"
            return detail, f"files {reader.table.glob}"
    assert isinstance(reader, HttpReader)
    from etl.sources.http.reader import Pager, dotted

    with reader.open() as reading:
        endpoint = reader.endpoint
        params = {**endpoint.params, **Pager(endpoint, endpoint.odata).first_params(size=5)}
        response = reading.client.get(endpoint.path, params)
        body = reading.client.json(response)
        records = dotted(body, endpoint.records_path)
        shown = reading.client.requests[-1]
        if not isinstance(records, list):
            from etl.errors import DataError

            raise DataError(f"GET {shown}: no list of records at {endpoint.records_path!r}")
        records_frame(records, wanted_columns(reader.mapping), shown, reader.where)
        clock = response.headers.get("Date", "no Date header: the run uses this machine's clock")
        detail = (
            f"HTTP {response.status_code}, {len(records)} record(s) on the first page"
            + (", the mapped fields all there" if records else "")
            + f"; server clock: {clock}"
        )
        return detail, f"GET {shown}"
