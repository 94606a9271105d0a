"""The one place that picks a job's Reader by its connector's ``kind``: ``sql`` (the default: a
table or query, etl/sources/sql/query.py), ``files`` (a file drop) or ``http`` (an HTTP API)."""

from __future__ import annotations

from collections.abc import Callable

from etl.config.models import Job, Project
from etl.sources.reader import Reader

#: kind -> the reader of a job on a connector of that kind
Factory = Callable[[Project, Job], Reader]


def _sql(project: Project, job: Job) -> Reader:
    from etl.sources.sql.query import SqlReader

    return SqlReader(
        job.connector_name,
        job.connector,
        job.mapping,
        f"mappings/{job.mapping_name}.yaml",
        project.root,
        project.secrets,
    )


def _files(project: Project, job: Job) -> Reader:
    from etl.sources.files.reader import FilesReader

    return FilesReader(
        job.connector_name,
        job.connector,
        job.mapping,
        f"mappings/{job.mapping_name}.yaml",
        project.root,
        project.spec.store,
        project.secrets,
        job=job.name,
    )


def _http(project: Project, job: Job) -> Reader:
    from etl.sources.http.reader import HttpReader

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
