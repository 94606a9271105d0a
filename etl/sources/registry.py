"""The one place that picks a job's Reader by its connector's ``kind``: ``sql`` (the default: a
table or query, etl/extract.py), ``files`` (a file drop) or ``http`` (an HTTP API)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import ConnectorSpec, Job, MappingSpec, Project
from ..errors import ConfigError
from ..reader import Reader

#: kind -> the reader of a job on a connector of that kind
Factory = Callable[[Project, Job], Reader]


def _sql(project: Project, job: Job) -> Reader:
    from ..extract import SqlReader

    return SqlReader(
        job.connector_name,
        job.connector,
        job.mapping,
        f"mappings/{job.mapping_name}.yaml",
        project.root,
        project.secrets,
    )


def _files(project: Project, job: Job) -> Reader:
    from .files.reader import FilesReader

    return FilesReader(
        job.connector_name,
        job.connector,
        job.mapping,
        f"mappings/{job.mapping_name}.yaml",
        project.root,
        project.spec.store,
        project.secrets,
    )


def _http(project: Project, job: Job) -> Reader:
    from .http.reader import HttpReader

    return HttpReader(
        job.connector_name,
        job.connector,
        job.mapping,
        f"mappings/{job.mapping_name}.yaml",
        project.root,
        project.secrets,
    )


READERS: dict[str, Factory] = {"sql": _sql, "files": _files, "http": _http}


def reader_for(project: Project, job: Job) -> Reader:
    """The reader of the job's source rows, by its connector's kind."""
    return READERS[job.connector.kind](project, job)


def source_problem(
    connector: str, spec: ConnectorSpec, mapping_name: str, mapping: MappingSpec
) -> str | None:
    """What keeps a file-drop or HTTP connector from reading the mapping's table (a custom
    query, a table the connector does not list), as one problem line; None when it can."""
    from .files.reader import file_table
    from .http.reader import endpoint_for

    where = f"mappings/{mapping_name}.yaml"
    try:
        if spec.kind == "files":
            file_table(connector, spec, mapping, where)
        elif spec.kind == "http":
            endpoint_for(connector, spec, mapping, where)
    except ConfigError as exc:
        return exc.message
    return None
