"""Load a project: ``etl.yaml`` plus the ``connectors/``, ``mappings/`` and ``jobs/`` folders.

Every file is validated strictly (unknown keys, wrong types, missing keys, dangling references,
unset ``${ENV}`` variables); all problems are collected and raised as one ConfigError whose lines
each name the file, the line and the key.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from etl.config.errors import format_errors, suggest
from etl.config.models import (
    PLACEHOLDERS,
    PROJECT_FILE,
    STRUCTURE_COLUMNS,
    ConnectorSpec,
    Job,
    JobSpec,
    MappingSpec,
    Project,
    ProjectSpec,
    Strict,
)
from etl.config.yamlfile import YamlDoc, fill_job_vars, read_yaml
from etl.errors import ConfigError

FOLDERS = ("connectors", "mappings", "jobs")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def find_root(start: Path | None = None) -> Path:
    """The project root: the nearest directory upwards holding ``etl.yaml``, else ``start``."""
    start = (start or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    return start


def load_project(
    root: Path, env: dict[str, str] | None = None, *, partial: bool = False
) -> Project:
    """Load and validate every file of the project at ``root``; raise one ConfigError listing all
    problems.

    With ``partial``, a job whose own files (its job, connector and mapping file) are valid is
    loaded even when other files have errors: the others' jobs land in ``Project.broken`` with
    their errors, and every problem in ``Project.problems``. Errors in ``etl.yaml`` still raise:
    it concerns every job.
    """
    root = root.resolve()
    problems: list[str] = []
    files: dict[str, YamlDoc] = {}
    by_file: dict[str, list[str]] = {}  # "mappings/x" -> the problems found in that file

    def parse(path: Path, key: str) -> YamlDoc | None:
        try:
            doc = read_yaml(
                path, str(path.relative_to(root)), env, job_vars=key.startswith("mappings/")
            )
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None
        files[key] = doc
        for loc, text in doc.bad_env:
            problems.append(
                f"{doc.where(loc)}: {text} is not a valid reference: write ${{VAR}} or ${{VAR:-default}}"
            )
        return doc

    # etl.yaml makes a project: folders of YAML files alone (such as the catalogue of examples
    # in booking-etl's own checkout) are not one, so no command acts on them by accident
    if not (root / PROJECT_FILE).is_file():
        raise ConfigError(
            f"{root}: not a booking-etl project (no {PROJECT_FILE})",
            hint="run 'etl init' to create one, or pass --project DIR",
        )
    project_doc = parse(root / PROJECT_FILE, PROJECT_FILE)
    project_spec = _validate(ProjectSpec, project_doc, problems) if project_doc else None
    project_problems = len(problems)
    project_ok = project_spec is not None
    spec = project_spec or ProjectSpec()

    loaded: dict[str, dict[str, Any]] = {}
    models: dict[str, type[Strict]] = {
        "connectors": ConnectorSpec,
        "mappings": MappingSpec,
        "jobs": JobSpec,
    }
    for folder in FOLDERS:
        loaded[folder] = {}
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            name = path.stem
            if not _NAME.match(name):
                problems.append(
                    f"{folder}/{path.name}: file name must be letters, digits, '_', '-' or '.'"
                )
                continue
            if name in loaded[folder]:
                problems.append(f"{folder}/{path.name}: a second file for {folder[:-1]} {name!r}")
                continue
            before = len(problems)
            doc = parse(path, f"{folder}/{name}")
            if doc is not None:
                model = _validate(models[folder], doc, problems)
                if folder == "mappings" and not _validate_columns(doc, problems):
                    model = None
                if folder == "mappings" and _placeholders(doc, problems):
                    model = None
                if model is not None:
                    loaded[folder][name] = model
            by_file[f"{folder}/{name}"] = problems[before:]

    connectors: dict[str, ConnectorSpec] = loaded["connectors"]
    mappings: dict[str, MappingSpec] = loaded["mappings"]
    jobs: dict[str, Job] = {}
    queries: dict[tuple[str, str], str | None] = {}  # (mapping, dialect) -> its query's problem
    for name, job_spec in loaded["jobs"].items():
        doc = files[f"jobs/{name}"]
        before = len(problems)
        ok = True
        for key, table, what in (
            ("connector", connectors, "connectors"),
            ("mapping", mappings, "mappings"),
        ):
            ref = getattr(job_spec, key)
            if ref not in table:
                ok = False
                known = (
                    {p.stem for p in (root / what).glob("*.y*ml")}
                    if (root / what).is_dir()
                    else set()
                )
                if ref in known:
                    problems.append(
                        f"{doc.where((key,))}: {what[:-1]} {ref!r} has errors (see above)"
                    )
                else:
                    problems.append(
                        f"{doc.where((key,))}: {what[:-1]} {ref!r} does not exist "
                        f"({suggest(ref, sorted(known), what)})"
                    )
        if not ok:
            by_file[f"jobs/{name}"] += problems[before:]
            continue
        start = job_spec.start_from or spec.defaults.start_from
        if start is None and not project_ok:
            continue  # etl.yaml's own error explains it
        if start is None:
            problems.append(
                f"{doc.where(('start_from',))}: missing: set 'start_from' in the job "
                f"or 'defaults.start_from' in {PROJECT_FILE}"
            )
            by_file[f"jobs/{name}"] += problems[before:]
            continue
        connector = connectors[job_spec.connector]
        if connector.kind != "sql":
            query_problem = _source_problem(
                job_spec.connector, connector, job_spec.mapping, mappings[job_spec.mapping]
            )
        else:
            query_problem = _query_problem(
                files[f"mappings/{job_spec.mapping}"],
                mappings[job_spec.mapping],
                connector.sql_dialect,
                queries,
            )
        if query_problem:
            if query_problem not in problems:
                problems.append(query_problem)
            by_file[f"jobs/{name}"].append(query_problem)
            continue
        mapping = _job_mapping(
            files[f"mappings/{job_spec.mapping}"],
            mappings[job_spec.mapping],
            job_spec,
            connectors[job_spec.connector],
            doc,
            problems,
        )
        if mapping is None:
            by_file[f"jobs/{name}"] += problems[before:]
            continue
        jobs[name] = Job(
            name=name,
            spec=job_spec,
            connector_name=job_spec.connector,
            connector=connectors[job_spec.connector],
            mapping_name=job_spec.mapping,
            mapping=mapping,
            start_from=_as_naive_datetime(start, connectors[job_spec.connector].zone),
            safety_lag=job_spec.safety_lag
            if job_spec.safety_lag is not None
            else spec.defaults.safety_lag,
            reread=job_spec.reread if job_spec.reread is not None else spec.defaults.reread,
            batch_size=spec.defaults.batch_size,
        )
    broken: dict[str, list[str]] = {}
    for key, found in by_file.items():
        folder, _, name = key.partition("/")
        if folder != "jobs" or name in jobs:
            continue
        job_spec = loaded["jobs"].get(name)
        own = list(found)
        if job_spec is not None:
            for ref in (f"connectors/{job_spec.connector}", f"mappings/{job_spec.mapping}"):
                own += [p for p in by_file.get(ref, []) if p not in own]
        broken[name] = own or [f"jobs/{name}: has errors (see 'etl validate')"]
    if problems and (not partial or project_problems):
        raise ConfigError(problems)
    return Project(
        root=root,
        spec=spec,
        connectors=connectors,
        mappings=mappings,
        jobs=jobs,
        files=files,
        broken=broken,
        problems=problems,
    )


def _job_mapping(
    mapping_doc: YamlDoc,
    mapping: MappingSpec,
    job: JobSpec,
    connector: ConnectorSpec,
    job_doc: YamlDoc,
    problems: list[str],
) -> MappingSpec | None:
    """The mapping as ``job`` uses it: its ``${name}`` variables filled from the job's
    ``variables`` (``${plant}`` defaults to the job's or the connector's ``plant``), and the job's
    ``filters`` appended to the mapping's. None (with the problems added) when the job leaves a
    variable unset or the filled mapping is invalid."""
    values = {str(k): str(v) for k, v in job.variables.items()}
    plant = job.plant if job.plant is not None else connector.plant
    if plant is not None:
        values.setdefault("plant", plant)
    used = dict.fromkeys(var for _loc, var in mapping_doc.job_vars)
    missing = [var for var in used if var not in values]
    for var in missing:
        where = next(loc for loc, name in mapping_doc.job_vars if name == var)
        problems.append(
            f"{job_doc.where(('variables',))}: mapping {job.mapping!r} uses ${{{var}}} "
            f"({mapping_doc.where(where)}), which the job does not set: add "
            f"'variables: {{{var}: ...}}'" + (" or 'plant'" if var == "plant" else "")
        )
    if missing:
        return None
    if used:
        filled = fill_job_vars(mapping_doc.data, values)
        try:
            mapping = MappingSpec.model_validate(filled)
        except ValidationError as exc:
            problems.append(
                f"{job_doc.where(('variables',))}: mapping {job.mapping!r} with the job's "
                f"variables is invalid: {exc.errors()[0]['msg']}"
            )
            return None
    if job.filters:
        mapping = mapping.model_copy(update={"filters": [*mapping.filters, *job.filters]})
    return mapping


def _query_problem(
    doc: YamlDoc, mapping: MappingSpec, dialect: str, seen: dict[tuple[str, str], str | None]
) -> str | None:
    """The problem with a mapping's custom ``source.query`` in the connector's SQL dialect
    (``mappings/x.yaml:4: source.query does not parse as SQL: ...``), or None."""
    if mapping.source.query is None:
        return None
    key = (doc.label, dialect)
    if key not in seen:
        from etl.config.queries import (
            check_custom_query,  # sqlglot: only for projects with custom queries
        )

        line = doc.lines.get(("source", "query"))
        try:
            check_custom_query(
                mapping.source.query,
                dialect,
                f"{doc.label}:{line}" if line else doc.label,
                mapping.source.allow_functions,
            )
            seen[key] = None
        except ConfigError as exc:
            seen[key] = exc.problems[0]
    return seen[key]


def _source_problem(
    name: str, connector: ConnectorSpec, mapping_name: str, mapping: MappingSpec
) -> str | None:
    """What keeps a file-drop or HTTP connector from reading the mapping's table (a custom
    query, a table the connector does not list), as one problem line; None when it can."""
    listed, key = (
        (connector.files.tables, "files.tables")
        if connector.files is not None
        else (connector.http.endpoints if connector.http is not None else {}, "http.endpoints")
    )
    where = f"mappings/{mapping_name}.yaml"
    table = mapping.source.table
    if table is None:
        return (
            f"{where}: source.query: a kind {connector.kind} connector ({name}) reads tables by "
            f"name: write 'source: {{table: NAME}}' and list NAME under the connector's {key}"
        )
    if table not in listed:
        return (
            f"connectors/{name}.yaml: {key}: no entry {table!r} (the table {where} reads; "
            f"listed: {', '.join(listed)})"
        )
    return None


def _as_naive_datetime(value: date | datetime, zone: ZoneInfo) -> datetime:
    """A job's start as naive wall-clock time of the plant (an aware value is converted)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is None else value.astimezone(zone).replace(tzinfo=None)
    return datetime(value.year, value.month, value.day)


def _placeholders(doc: YamlDoc, problems: list[str]) -> bool:
    """Report every ``CHANGE_ME`` that ``etl discover`` left in a mapping; True if there was one.

    A placeholder passes the models (it is a valid column name, constant or code), so without
    this a job would read a column that does not exist or store every run under order
    'CHANGE_ME'."""
    found: list[tuple[tuple[str | int, ...], str]] = []

    def walk(node: Any, loc: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*loc, i))
        elif isinstance(node, str) and node.strip() in PLACEHOLDERS:
            found.append((loc, node.strip()))

    walk(doc.data, ())
    for loc, word in found:
        if loc[:1] == ("columns",) and len(loc) > 1:
            what = f"name the source column ({loc[1]}: COLUMN)"
        elif loc[:1] == ("events",):
            what = "list the source's codes here"
        else:
            what = "replace it"
        problems.append(
            f"{doc.where(loc)}: placeholder {word!r} from etl discover: {what}; discover "
            "recognised none ('etl discover CONNECTOR' lists the table's columns)"
        )
    return bool(found)


def _validate_columns(doc: YamlDoc, problems: list[str]) -> bool:
    data = doc.data if isinstance(doc.data, dict) else {}
    structure, columns = data.get("structure"), data.get("columns")
    if structure not in STRUCTURE_COLUMNS or not isinstance(columns, dict):
        return True  # the mapping model reports what is wrong with these keys
    model: type[BaseModel] = STRUCTURE_COLUMNS[structure]
    try:
        model.model_validate(columns)
    except ValidationError as exc:
        problems.extend(format_errors(exc, doc, model, prefix=("columns",)))
        return False
    return True


def _validate(model: type[Strict], doc: YamlDoc, problems: list[str]) -> Any:
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{doc.label}: expected a mapping of keys to values at the top level")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(format_errors(exc, doc, model))
        return None
