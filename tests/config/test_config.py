"""Every way a project's YAML can be wrong: each problem names the file, the line and the key.

Each broken project is built in ``tmp_path`` from a small valid baseline with one file replaced.
The messages are checked through ``load_project`` / ``Project.require_env`` (ConfigError, exit
code 2); ``test_cli_validate_exits_2`` runs the same table through ``etl validate``.
"""

from __future__ import annotations

import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from etl.config.loader import load_project
from etl.config.models import Project
from etl.errors import ConfigError

# --------------------------------------------------------------------------- the baseline

ETL_YAML = """\
defaults:
  start_from: 2024-01-01
"""

CONNECTOR = """\
dialect: sqlite
path: plant.sqlite
timezone: Europe/Berlin
"""

BOOKINGS = """\
structure: bookings
source:
  table: BUCHUNGEN
columns:
  timestamp: TS
  order_code: AUNR
  machine_code: MASCHNR
  event: KENN
events:
  START: [10]
  END: [20]
"""

ORDERS = """\
structure: orders
source:
  table: AUFTRAEGE
columns:
  order_code: AUNR
  machine_code: ARBPL
  start: STARTZEIT
  end: ENDZEIT
"""

JOB = """\
connector: plant
mapping: bookings
"""

BASELINE: dict[str, str] = {
    "etl.yaml": ETL_YAML,
    "connectors/plant.yaml": CONNECTOR,
    "mappings/bookings.yaml": BOOKINGS,
    "jobs/sync.yaml": JOB,
}

PASSWORD = "S3cr3t-Pa55w0rd"

# etl.yaml errors are tested in a project without jobs, so that only etl.yaml's own error is
# reported (with a job: test_an_invalid_etl_yaml_with_a_job).
NO_JOB: dict[str, str | None] = {"jobs/sync.yaml": None}


# --------------------------------------------------------------------------- helpers


def make_project(root: Path, files: dict[str, str | None] | None = None) -> Path:
    """Write the baseline project into ``root`` with ``files`` replaced (None: left out)."""
    merged: dict[str, str | None] = {**BASELINE, **(files or {})}
    for relative, text in merged.items():
        if text is None:
            continue
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def load(root: Path, env: dict[str, str] | None = None) -> Project:
    """Load with an explicit environment (never the test runner's own)."""
    return load_project(root, env={} if env is None else env)


def config_error(
    root: Path, env: dict[str, str] | None = None, *, require: bool = False
) -> ConfigError:
    """The ConfigError loading (and, with ``require``, checking the env of) the project raises."""
    with pytest.raises(ConfigError) as info:
        project = load(root, env)
        if require:
            project.require_env()
    error = info.value
    assert error.exit_code == 2
    assert error.problems, "a ConfigError must list its problems"
    assert str(error).startswith("\n".join(error.problems))
    return error


def problem_with(error: ConfigError, *parts: str) -> str:
    """The one problem line containing every part; fails listing all problems otherwise."""
    matches = [line for line in error.problems if all(part in line for part in parts)]
    assert matches, f"no problem contains all of {parts!r}; problems:\n" + "\n".join(error.problems)
    return matches[0]


# --------------------------------------------------------------------------- the valid baseline


def test_baseline_project_is_valid(tmp_path: Path) -> None:
    project = load(make_project(tmp_path))
    project.require_env()
    job = project.job("sync")
    assert job.connector_name == "plant"
    assert job.mapping.structure == "bookings"
    assert job.start_from == datetime(2024, 1, 1)
    assert job.safety_lag == timedelta(minutes=5)  # the built-in default
    assert job.connector.zone.key == "Europe/Berlin"


# --------------------------------------------------------------------------- the table of errors
#
# Each case: the files replacing the baseline, and the parts that ONE problem line must contain
# (file:line: key: message).

CASES = [
    # ----- unknown keys, with did-you-mean or the list of allowed keys
    pytest.param(
        {"jobs/sync.yaml": "connector: plant\nmapping: bookings\nschedul: '0 2 * * *'\n"},
        ["jobs/sync.yaml:3: schedul: unknown key 'schedul' (did you mean 'schedule'?)"],
        id="unknown-key-job",
    ),
    pytest.param(
        {"jobs/sync.yaml": "connector: plant\nmapping: bookings\nfrobnicate: 1\n"},
        ["jobs/sync.yaml:3: frobnicate: unknown key 'frobnicate' (allowed: connector, mapping,"],
        id="unknown-key-allowed-list",
    ),
    pytest.param(
        {"etl.yaml": "defaults:\n  start_from: 2024-01-01\n  safty_lag: 5m\n", **NO_JOB},
        ["etl.yaml:3: defaults.safty_lag: unknown key 'safty_lag' (did you mean 'safety_lag'?)"],
        id="unknown-key-nested-etl-yaml",
    ),
    pytest.param(
        {"connectors/plant.yaml": CONNECTOR + "pasword: hunter22\n"},
        ["connectors/plant.yaml:4: pasword: unknown key 'pasword' (did you mean 'password'?)"],
        id="unknown-key-connector",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("timestamp: TS", "timestamp: {colum: TS}")},
        [
            "mappings/bookings.yaml:5: columns.timestamp.colum: "
            "unknown key 'colum' (did you mean 'column'?)"
        ],
        id="unknown-key-column-spec",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("timestamp: TS", "timestamp: TS\n  start: X")},
        ["mappings/bookings.yaml:6: columns.start: unknown key 'start'"],
        id="unknown-key-orders-field-in-bookings",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS + "filters:\n  - {column: WERK, equals: '1000'}\n"},
        ["mappings/bookings.yaml:13: filters[0].equals: unknown key 'equals'"],
        id="unknown-key-filter",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  END: [20]", "  END: [20]\n  IGNORE: [40]")},
        ["mappings/bookings.yaml:12: events.IGNORE: unknown key 'IGNORE' (did you mean 'ignore'?)"],
        id="unknown-key-events",
    ),
    # ----- wrong types
    pytest.param(
        {"connectors/plant.yaml": "dialect: mysql\nhost: db\ndatabase: bde\nport: high\n"},
        ["connectors/plant.yaml:4: port: Input should be a valid integer", "(got 'high')"],
        id="wrong-type-port",
    ),
    pytest.param(
        {"connectors/plant.yaml": "dialect: mysql\nhost: db\ndatabase: bde\nport: 70000\n"},
        ["connectors/plant.yaml:4: port: Input should be less than or equal to 65535"],
        id="out-of-range-port",
    ),
    pytest.param(
        {"connectors/plant.yaml": "dialect: db2\nhost: db\n"},
        ["connectors/plant.yaml:1: dialect: Input should be 'mssql', 'mysql'", "(got 'db2')"],
        id="wrong-dialect",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "enabled: maybe\n"},
        ["jobs/sync.yaml:3: enabled: Input should be a valid boolean", "(got 'maybe')"],
        id="wrong-type-bool",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "description: [a, b]\n"},
        ["jobs/sync.yaml:3: description: Input should be a valid string"],
        id="wrong-type-string",
    ),
    pytest.param(
        {"etl.yaml": ETL_YAML + "  batch_size: 10\n", **NO_JOB},
        ["etl.yaml:3: defaults.batch_size: Input should be greater than or equal to 100"],
        id="batch-size-too-small",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("structure: bookings", "structure: events")},
        ["mappings/bookings.yaml:1: structure: Input should be 'bookings' or 'orders'"],
        id="wrong-structure",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  START: [10]", "  START: 10")},
        ["mappings/bookings.yaml:10: events.START: Input should be a valid list"],
        id="codes-not-a-list",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  START: [10]", "  START: []")},
        ["mappings/bookings.yaml:10: events.START: List should have at least 1 item"],
        id="codes-empty",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "start_from: next tuesday\n"},
        ["jobs/sync.yaml:3: start_from: expected a date like 2026-11-01"],
        id="wrong-type-start-from",
    ),
    pytest.param(
        {"connectors/plant.yaml": "- dialect: sqlite\n- path: plant.sqlite\n"},
        ["connectors/plant.yaml: expected a mapping of keys to values at the top level"],
        id="top-level-list",
    ),
    # ----- missing required keys
    pytest.param(
        {"jobs/sync.yaml": "connector: plant\n"},
        ["jobs/sync.yaml: mapping: missing required key"],
        id="missing-mapping",
    ),
    pytest.param(
        {"jobs/sync.yaml": ""},
        ["jobs/sync.yaml: connector: missing required key"],
        id="empty-job-file",
    ),
    pytest.param(
        {"connectors/plant.yaml": "path: plant.sqlite\n"},
        ["connectors/plant.yaml: dialect: missing required key"],
        id="missing-dialect",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("source:\n  table: BUCHUNGEN\n", "")},
        ["mappings/bookings.yaml: source: missing required key"],
        id="missing-source",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  event: KENN\n", "")},
        ["mappings/bookings.yaml:4: columns.event: missing required key"],
        id="missing-bookings-column",
    ),
    pytest.param(
        {"mappings/bookings.yaml": ORDERS.replace("  end: ENDZEIT\n", "")},
        ["mappings/bookings.yaml:4: columns.end: missing required key"],
        id="missing-orders-column",
    ),
    pytest.param(
        {"etl.yaml": "name: no defaults\n"},
        [
            "jobs/sync.yaml: start_from: missing: set 'start_from' in the job "
            "or 'defaults.start_from' in etl.yaml"
        ],
        id="missing-start-from",
    ),
    pytest.param(
        {"connectors/plant.yaml": "dialect: sqlite\n"},
        ["connectors/plant.yaml: path: missing: a sqlite connector needs 'path'"],
        id="sqlite-without-path",
    ),
    pytest.param(
        {"connectors/plant.yaml": "dialect: postgresql\ndatabase: mes\n"},
        ["connectors/plant.yaml: host: missing: a postgresql connector needs 'host' or 'url'"],
        id="postgresql-without-host",
    ),
    pytest.param(
        {"connectors/plant.yaml": "dialect: mssql\nhost: sql01\n"},
        ["connectors/plant.yaml: database: missing: a mssql connector needs 'database'"],
        id="mssql-without-database",
    ),
    # ----- dangling references
    pytest.param(
        {"jobs/sync.yaml": "connector: plnt\nmapping: bookings\n"},
        [
            "jobs/sync.yaml:1: connector: connector 'plnt' does not exist "
            "(did you mean 'plant'? connectors: plant)"
        ],
        id="dangling-connector",
    ),
    pytest.param(
        {"jobs/sync.yaml": "connector: plant\nmapping: hydra\n"},
        ["jobs/sync.yaml:2: mapping: mapping 'hydra' does not exist (mappings: bookings)"],
        id="dangling-mapping",
    ),
    pytest.param(
        {"connectors/plant.yaml": None, "jobs/sync.yaml": JOB},
        ["jobs/sync.yaml:1: connector: connector 'plant' does not exist (connectors: none)"],
        id="dangling-connector-no-folder",
    ),
    pytest.param(
        {"connectors/plant.yaml": "dialect: sqlite\npath: x.sqlite\ntimezone: Berlin\n"},
        ["jobs/sync.yaml:1: connector: connector 'plant' has errors (see above)"],
        id="connector-with-errors",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("events:\n  START: [10]\n  END: [20]\n", "")},
        ["jobs/sync.yaml:2: mapping: mapping 'bookings' has errors (see above)"],
        id="mapping-with-errors",
    ),
    pytest.param(
        {"mappings/bookings.yaml": "structure: [bookings\n"},
        ["jobs/sync.yaml:2: mapping: mapping 'bookings' has errors (see above)"],
        id="mapping-with-syntax-error",
    ),
    # ----- YAML syntax errors and duplicate keys, with line numbers
    pytest.param(
        {"jobs/sync.yaml": "connector: plant\nmapping: bookings\n\tschedule: '0 2 * * *'\n"},
        ["jobs/sync.yaml:3: YAML syntax error: found character '\\t' that cannot start any token"],
        id="yaml-tab",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  START: [10]", "  START: [10, 'A'")},
        ["mappings/bookings.yaml:", "YAML syntax error"],
        id="yaml-unclosed-flow",
    ),
    pytest.param(
        {"etl.yaml": "name: plant: 1\n"},
        ["etl.yaml:1: YAML syntax error: mapping values are not allowed here"],
        id="yaml-colon-in-plain-scalar",
    ),
    pytest.param(
        {"jobs/sync.yaml": "connector: plant\nmapping: bookings\nconnector: other\n"},
        ["jobs/sync.yaml:3: YAML syntax error: duplicate key 'connector' (first on line 1)"],
        id="duplicate-key",
    ),
    pytest.param(
        {
            "mappings/bookings.yaml": BOOKINGS.replace(
                "  event: KENN", "  event: KENN\n  event: SATZART"
            )
        },
        ["mappings/bookings.yaml:9: YAML syntax error: duplicate key 'event' (first on line 8)"],
        id="duplicate-key-nested",
    ),
    # ----- time zones, cron, durations
    pytest.param(
        {"connectors/plant.yaml": CONNECTOR.replace("Europe/Berlin", "Europe/Berlinn")},
        [
            "connectors/plant.yaml:3: timezone: unknown time zone 'Europe/Berlinn' "
            "(did you mean 'Europe/Berlin'? use an IANA name such as 'Europe/Berlin' or 'UTC')"
        ],
        id="unknown-timezone-connector",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "start_from: 01.11.2026\n"},
        [
            "jobs/sync.yaml:3: start_from: expected a date like 2026-11-01 or a date and time "
            "like 2026-11-01 06:00:00 (plant wall-clock time), got '01.11.2026'"
        ],
        id="start-from-not-iso",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "timezone: CEST\n"},
        ["jobs/sync.yaml:3: timezone: unknown time zone 'CEST'"],
        id="unknown-timezone-job",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "schedule: '0 2 * *'\n"},
        [
            "jobs/sync.yaml:3: schedule: expected a 5-field cron expression like '0 * * * *', "
            "got '0 2 * *'"
        ],
        id="cron-four-fields",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "schedule: '0 0 2 * * *'\n"},
        ["jobs/sync.yaml:3: schedule: expected a 5-field cron expression"],
        id="cron-six-fields",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "schedule: '61 2 * * *'\n"},
        ["jobs/sync.yaml:3: schedule: invalid cron expression '61 2 * * *'", "61"],
        id="cron-out-of-range",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "schedule: '0 2 * * someday'\n"},
        ["jobs/sync.yaml:3: schedule: invalid cron expression '0 2 * * someday'"],
        id="cron-bad-weekday",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "safety_lag: 5 minutes\n"},
        [
            "jobs/sync.yaml:3: safety_lag: expected a duration like '5m', '2h' or '14d', "
            "got '5 minutes'"
        ],
        id="bad-duration-job",
    ),
    pytest.param(
        {"jobs/sync.yaml": JOB + "reread: -3600\n"},
        ["jobs/sync.yaml:3: reread: a duration cannot be negative"],
        id="negative-duration",
    ),
    pytest.param(
        {"etl.yaml": ETL_YAML + "  reread: fortnight\n", **NO_JOB},
        ["etl.yaml:3: defaults.reread: expected a duration like '5m', '2h' or '14d'"],
        id="bad-duration-defaults",
    ),
    pytest.param(
        {"connectors/plant.yaml": CONNECTOR + "connect_timeout: true\n"},
        ["connectors/plant.yaml:4: connect_timeout: expected a duration", "got True"],
        id="bad-duration-bool",
    ),
    # ----- filters
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS + "filters:\n  - {column: STORNO}\n"},
        [
            "mappings/bookings.yaml:13: filters[0]: give exactly one operator of "
            "eq, ne, lt, le, gt, ge, in, not_in, is_null (got 0)"
        ],
        id="filter-no-operator",
    ),
    pytest.param(
        {
            "mappings/bookings.yaml": BOOKINGS
            + "filters:\n  - {column: STORNO, eq: 0}\n  - {column: WERK, eq: '1000', ne: '2000'}\n"
        },
        ["mappings/bookings.yaml:14: filters[1]: give exactly one operator", "(got 2)"],
        id="filter-two-operators",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS + "filters:\n  - {eq: 0}\n"},
        ["mappings/bookings.yaml:13: filters[0].column: missing required key"],
        id="filter-without-column",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS + "filters:\n  - {column: WERK, in: []}\n"},
        ["mappings/bookings.yaml:13: filters[0].in: List should have at least 1 item"],
        id="filter-empty-in",
    ),
    # ----- structure and events
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("events:\n  START: [10]\n  END: [20]\n", "")},
        [
            "mappings/bookings.yaml: events: missing: a bookings mapping needs 'events' "
            "(source codes for START and END)"
        ],
        id="bookings-without-events",
    ),
    pytest.param(
        {"mappings/bookings.yaml": ORDERS + "events:\n  START: [A]\n  END: [E]\n"},
        [
            "mappings/bookings.yaml:9: events: 'events' belongs to a bookings mapping; an orders mapping has none"
        ],
        id="orders-with-events",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  END: [20]", "  END: [20, 10]")},
        ["mappings/bookings.yaml:9: events: code 10 is listed under both START and END"],
        id="code-in-start-and-end",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  END: [20]", "  END: [20, ' 10 ']")},
        ["mappings/bookings.yaml:9: events: code ' 10 ' is listed under both START and END"],
        id="code-in-start-and-end-as-text",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("  END: [20]", "  END: [20]\n  ignore: [10]")},
        ["mappings/bookings.yaml:9: events: code 10 is listed under both START and ignore"],
        id="code-in-start-and-ignore",
    ),
    # ----- column specs
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("timestamp: TS", "timestamp: {date: BUCHDAT}")},
        [
            "mappings/bookings.yaml:5: columns.timestamp: "
            "'date' and 'time' go together: name both columns"
        ],
        id="date-without-time",
    ),
    pytest.param(
        {
            "mappings/bookings.yaml": BOOKINGS.replace(
                "timestamp: TS", "timestamp: {time: BUCHZEIT}"
            )
        },
        ["mappings/bookings.yaml:5: columns.timestamp: 'date' and 'time' go together"],
        id="time-without-date",
    ),
    pytest.param(
        {
            "mappings/bookings.yaml": BOOKINGS.replace(
                "timestamp: TS", "timestamp: {column: TS, value: 1}"
            )
        },
        [
            "mappings/bookings.yaml:5: columns.timestamp: "
            "give exactly one of 'column', 'date' + 'time', or 'value'"
        ],
        id="column-and-value",
    ),
    pytest.param(
        {
            "mappings/bookings.yaml": BOOKINGS.replace(
                "machine_code: MASCHNR", "machine_code: {trim: true}"
            )
        },
        ["mappings/bookings.yaml:7: columns.machine_code: give exactly one of"],
        id="column-spec-without-source",
    ),
    pytest.param(
        {"mappings/bookings.yaml": BOOKINGS.replace("event: KENN", "event: 7")},
        ["mappings/bookings.yaml:8: columns.event: Input should be a valid dictionary"],
        id="column-spec-number",
    ),
    # ----- source
    pytest.param(
        {
            "mappings/bookings.yaml": BOOKINGS.replace(
                "  table: BUCHUNGEN", "  table: B\n  query: SELECT 1"
            )
        },
        ["mappings/bookings.yaml:2: source: give exactly one of 'table' or 'query'"],
        id="table-and-query",
    ),
    pytest.param(
        {
            "mappings/bookings.yaml": BOOKINGS.replace(
                "  table: BUCHUNGEN", "  query: SELECT * FROM B\n  schema: bde"
            )
        },
        ["mappings/bookings.yaml:4: source.schema: 'schema' goes with 'table'"],
        id="schema-with-query",
    ),
    # ----- connectors
    pytest.param(
        {"connectors/plant.yaml": "dialect: oracle\nhost: sap-db\nuser: etl\n"},
        [
            "connectors/plant.yaml: service_name: an oracle connector needs exactly one of 'service_name' or 'sid'"
        ],
        id="oracle-without-service-name",
    ),
    pytest.param(
        {"connectors/plant.yaml": "dialect: oracle\nhost: sap-db\nservice_name: PRD\nsid: PRD\n"},
        [
            "connectors/plant.yaml:3: service_name: an oracle connector needs exactly one of 'service_name' or 'sid'"
        ],
        id="oracle-with-both",
    ),
    pytest.param(
        {
            "connectors/plant.yaml": (
                "dialect: postgresql\nurl: postgresql://etl@db/mes\nhost: db\ndatabase: mes\n"
            )
        },
        ["connectors/plant.yaml:3: host: give either 'url' or 'host', 'database', not both"],
        id="url-with-host",
    ),
    # ----- files
    pytest.param(
        {"connectors/plant 2.yaml": CONNECTOR},
        ["connectors/plant 2.yaml: file name must be letters, digits, '_', '-' or '.'"],
        id="bad-file-name",
    ),
    pytest.param(
        {"connectors/plant.yml": CONNECTOR},
        ["connectors/plant.yml: a second file for connector 'plant'"],
        id="yaml-and-yml",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CASES)
def test_config_error(tmp_path: Path, files: dict[str, str | None], expected: list[str]) -> None:
    error = config_error(make_project(tmp_path, files))
    problem_with(error, *expected)


def test_connector_errors_come_before_the_job_that_uses_it(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, {"connectors/plant.yaml": CONNECTOR.replace("Europe/Berlin", "Berlin")}
    )
    error = config_error(root)
    own = error.problems.index(problem_with(error, "connectors/plant.yaml:3: timezone"))
    job = error.problems.index(problem_with(error, "jobs/sync.yaml:1: connector", "has errors"))
    assert own < job


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        {
            "etl.yaml": ETL_YAML + "  batch_size: lots\n",
            "connectors/plant.yaml": CONNECTOR + "prot: 1\n",
            "mappings/bookings.yaml": BOOKINGS.replace("  END: [20]", "  END: [10]"),
            "mappings/orders.yaml": ORDERS.replace("structure: orders", "structure: ordres"),
            "jobs/sync.yaml": JOB + "schedule: hourly\n",
            "jobs/broken.yaml": "connector: plant\nmapping: [\n",
        },
    )
    error = config_error(root)
    problem_with(error, "etl.yaml:3: defaults.batch_size")
    problem_with(error, "connectors/plant.yaml:4: prot: unknown key 'prot' (did you mean 'port'?)")
    problem_with(error, "mappings/bookings.yaml:9: events: code 10")
    problem_with(error, "mappings/orders.yaml:1: structure")
    problem_with(error, "jobs/sync.yaml:3: schedule")
    problem_with(error, "jobs/broken.yaml:", "YAML syntax error")
    assert len(error.problems) >= 6


def test_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert info.value.exit_code == 2
    assert "not a booking-etl project" in str(info.value)
    assert "etl init" in (info.value.hint or "")


def test_unknown_job_name_lists_the_jobs(tmp_path: Path) -> None:
    project = load(make_project(tmp_path))
    with pytest.raises(ConfigError) as info:
        project.job("snyc")
    assert info.value.exit_code == 2
    assert "job 'snyc' does not exist" in info.value.message
    assert info.value.hint == "did you mean 'sync'? jobs: sync"


# --------------------------------------------------------------------------- ${ENV} variables

SECRET_CONNECTOR = """\
dialect: postgresql
host: ${PLANT_DB_HOST:-mes-db.example.com}
port: ${PLANT_DB_PORT:-5433}
database: mes
user: etl_reader
password: ${PLANT_DB_PASSWORD}
"""


def test_unset_env_is_reported_by_require_env_not_by_load(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"connectors/plant.yaml": SECRET_CONNECTOR})
    project = load(root)  # loading does not need the secret yet
    with pytest.raises(ConfigError) as info:
        project.require_env(["sync"])
    assert info.value.exit_code == 2
    assert info.value.problems == [
        "connectors/plant.yaml:6: password: environment variable PLANT_DB_PASSWORD is not set"
    ]
    assert "${VAR:-default}" in (info.value.hint or "")


def test_unset_env_only_counts_for_files_a_job_uses(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        {
            "connectors/spare.yaml": SECRET_CONNECTOR,  # no job uses it
            "mappings/spare.yaml": BOOKINGS.replace("BUCHUNGEN", "${SPARE_TABLE}"),
            "jobs/other.yaml": "connector: plant\nmapping: bookings\ndescription: ${OTHER_NOTE}\n",
        },
    )
    project = load(root)
    project.require_env(["sync"])  # sync uses none of the unset variables
    project.require_env([])
    with pytest.raises(ConfigError) as info:
        project.require_env(["sync", "other"])
    assert info.value.problems == [
        "jobs/other.yaml:3: description: environment variable OTHER_NOTE is not set"
    ]
    # None means every file of the project, used or not.
    error = config_error(root, require=True)
    problem_with(error, "connectors/spare.yaml:6: password: environment variable PLANT_DB_PASSWORD")
    problem_with(error, "mappings/spare.yaml:3: source.table: environment variable SPARE_TABLE")
    problem_with(error, "jobs/other.yaml:3: description: environment variable OTHER_NOTE")
    assert len(error.problems) == 3


def test_unset_env_in_etl_yaml_counts_for_every_job(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"etl.yaml": ETL_YAML + "store: ${ETL_STORE_URL}\n"})
    with pytest.raises(ConfigError) as info:
        load(root).require_env(["sync"])
    assert info.value.problems == [
        "etl.yaml:3: store: environment variable ETL_STORE_URL is not set"
    ]


def test_env_values_and_defaults(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"connectors/plant.yaml": SECRET_CONNECTOR})
    env = {"PLANT_DB_PASSWORD": PASSWORD, "PLANT_DB_HOST": "10.1.2.3"}
    project = load(root, env)
    project.require_env()
    conn = project.connectors["plant"]
    assert conn.host == "10.1.2.3"  # set: the variable wins over the default
    assert conn.port == 5433  # unset: the default, converted like a literal
    assert conn.password is not None
    assert conn.password.get_secret_value() == PASSWORD
    assert PASSWORD in project.secrets
    assert PASSWORD not in repr(conn)


def test_env_default_may_be_empty_and_may_hold_punctuation(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        {
            "connectors/plant.yaml": "dialect: postgresql\nhost: db\ndatabase: bde\n"
            "description: '${NOTE:-}'\noptions:\n  sslmode: ${SSLMODE:-verify-full}\n"
        },
    )
    conn = load(root).connectors["plant"]
    assert conn.description == ""
    assert conn.options == {"sslmode": "verify-full"}


def test_env_from_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path, {"connectors/plant.yaml": SECRET_CONNECTOR})
    monkeypatch.setenv("PLANT_DB_PASSWORD", PASSWORD)
    project = load_project(root)  # env=None reads os.environ
    project.require_env()
    assert project.connectors["plant"].password is not None
    assert project.connectors["plant"].password.get_secret_value() == PASSWORD


def test_double_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        {"jobs/sync.yaml": JOB + "description: 'costs $$5, literally $${NOT_A_VAR}'\n"},
    )
    project = load(root)
    project.require_env()  # $${NOT_A_VAR} is not a reference
    assert project.jobs["sync"].spec.description == "costs $5, literally ${NOT_A_VAR}"


def test_env_values_are_not_substituted_again(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"connectors/plant.yaml": SECRET_CONNECTOR})
    project = load(root, {"PLANT_DB_PASSWORD": "pa$$${HOME}word"})
    assert project.connectors["plant"].password is not None
    assert project.connectors["plant"].password.get_secret_value() == "pa$$${HOME}word"


def test_env_value_is_validated_like_a_literal(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"connectors/plant.yaml": SECRET_CONNECTOR})
    error = config_error(root, {"PLANT_DB_PASSWORD": PASSWORD, "PLANT_DB_PORT": "pg"})
    problem_with(
        error, "connectors/plant.yaml:3: port: Input should be a valid integer", "(got 'pg')"
    )


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "connector",
    [
        pytest.param(
            f"dialect: postgresql\nhost: db\ndatabase: mes\nport: nope\npassword: {PASSWORD}\nsslmod: x\n",
            id="literal-password-other-errors",
        ),
        pytest.param(
            "dialect: postgresql\nhost: db\ndatabase: mes\npassword: 123456789\n",
            id="password-wrong-type",
        ),
        pytest.param(
            f"dialect: postgresql\nhost: db\ndatabase: mes\npassword: [{PASSWORD}]\n",
            id="password-list",
        ),
        pytest.param(
            f"dialect: postgresql\nurl: postgresql://etl:{PASSWORD}@db/mes\nhost: db\n",
            id="url-with-password-and-host",
        ),
        pytest.param(
            "dialect: postgresql\nurl: postgresql://etl:${PLANT_DB_PASSWORD}@db/mes\nhost: db\n",
            id="url-with-env-password-and-host",
        ),
        pytest.param(
            "dialect: oracle\nhost: sap\npassword: ${PLANT_DB_PASSWORD}\ntimezone: Mars\n",
            id="env-password-other-errors",
        ),
        pytest.param(
            f"dialect: mssql\nhost: db\ndatabase: bde\npasword: {PASSWORD}\n",
            id="misspelt-password-key",
        ),
    ],
)
def test_password_never_in_messages(tmp_path: Path, connector: str) -> None:
    root = make_project(tmp_path, {"connectors/plant.yaml": connector})
    error = config_error(root, {"PLANT_DB_PASSWORD": PASSWORD})
    assert any(line.startswith("connectors/plant.yaml") for line in error.problems)
    for secret in (PASSWORD, "123456789"):
        assert secret not in str(error)
        assert secret not in repr(error)
        assert secret not in (error.hint or "")


# --------------------------------------------------------------------------- values that load

ALL_OPTIONS_MAPPING = """\
structure: bookings
description: HYDRA-like
source: {schema: dbo, table: BDE_BUCHUNG}
columns:
  timestamp: {date: BUCHDAT, time: BUCHZEIT, date_format: '%Y%m%d', time_format: '%H%M%S'}
  order_code: AUNR
  machine_code: {column: MASCHNR, trim: true}
  event: SATZART
  product_code: {value: 'n/a'}
events: {START: [10, 'A'], END: [20, 30, 'E', 'U'], ignore: [40]}
filters:
  - {column: STORNO, eq: 0}
  - {column: WERK, eq: '1000'}
  - {column: KZ, in: [1, 2]}
  - {column: AGNR, not_in: ['9999']}
  - {column: BUCHDAT, ge: 2020-01-01}
  - {column: GELOESCHT, is_null: true}
dst: {ambiguous: later, nonexistent: shift_backward}
"""


def test_every_key_of_a_mapping_loads(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"mappings/bookings.yaml": ALL_OPTIONS_MAPPING})
    mapping = load(root).mappings["bookings"]
    specs = mapping.column_specs()
    assert specs["timestamp"].source_columns() == ["BUCHDAT", "BUCHZEIT"]
    assert specs["machine_code"].trim is True
    assert specs["product_code"].value == "n/a"
    assert mapping.source.describe() == "dbo.BDE_BUCHUNG"
    assert mapping.events is not None
    assert mapping.events.lookup() == {
        "10": "START",
        "A": "START",
        "20": "END",
        "30": "END",
        "E": "END",
        "U": "END",
        "40": "IGNORE",
    }
    assert [(f.column, f.op, f.operand) for f in mapping.filters] == [
        ("STORNO", "eq", 0),
        ("WERK", "eq", "1000"),
        ("KZ", "in", [1, 2]),
        ("AGNR", "not_in", ["9999"]),
        ("BUCHDAT", "ge", date(2020, 1, 1)),
        ("GELOESCHT", "is_null", True),
    ]
    assert (mapping.dst.ambiguous, mapping.dst.nonexistent) == ("later", "shift_backward")


def test_job_settings_override_defaults(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        {
            "etl.yaml": ETL_YAML + "  safety_lag: 10m\n  reread: 14d\n  batch_size: 1000\n",
            "jobs/sync.yaml": JOB + "start_from: 2024-03-01 06:30:00\nreread: 1d12h\n",
            "jobs/defaults.yaml": JOB
            + "schedule: '*/15 6-22 * * mon-fri'\ntimezone: Europe/Vienna\n",
        },
    )
    project = load(root)
    sync, defaults = project.jobs["sync"], project.jobs["defaults"]
    assert sync.start_from == datetime(2024, 3, 1, 6, 30)
    assert sync.reread == timedelta(days=1, hours=12)
    assert sync.safety_lag == timedelta(minutes=10)
    assert defaults.start_from == datetime(2024, 1, 1)
    assert defaults.reread == timedelta(days=14)
    assert defaults.batch_size == 1000
    assert defaults.spec.timezone == "Europe/Vienna"


# --------------------------------------------------------------------------- edge cases
#
# Inputs that once slipped through or were reported badly; each test pins the fixed behaviour.


def test_a_time_zone_naming_a_directory_is_unknown(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, {"connectors/plant.yaml": CONNECTOR.replace("Europe/Berlin", "Europe")}
    )
    problem_with(
        config_error(root), "connectors/plant.yaml:3: timezone: unknown time zone 'Europe'"
    )


def test_a_key_named_date_keeps_its_location(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        {
            "mappings/bookings.yaml": BOOKINGS.replace(
                "timestamp: TS", "timestamp: {date: 5, time: T}"
            )
        },
    )
    problem_with(config_error(root), "mappings/bookings.yaml:5: columns.timestamp.date:")


def test_a_boolean_event_code_is_rejected(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, {"mappings/bookings.yaml": BOOKINGS.replace("END: [20]", "END: [OFF]")}
    )
    problem_with(config_error(root), "mappings/bookings.yaml:11: events.END")


def test_an_unset_env_in_a_typed_key_names_the_variable(tmp_path: Path) -> None:
    root = make_project(
        tmp_path,
        {"connectors/plant.yaml": "dialect: mysql\nhost: db\ndatabase: bde\nport: ${DB_PORT}\n"},
    )
    problem_with(config_error(root), "connectors/plant.yaml:4: port: environment variable DB_PORT")


def test_a_malformed_env_reference_is_an_error(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, {"connectors/plant.yaml": CONNECTOR + "password: ${PLANT_DB_PASSWORD-x}\n"}
    )
    problem_with(config_error(root), "connectors/plant.yaml:4: password:")


def test_an_aware_start_from_becomes_plant_wall_clock(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, {"jobs/sync.yaml": JOB + "start_from: 2024-01-01T00:00:00+00:00\n"}
    )
    assert load(root).jobs["sync"].start_from == datetime(2024, 1, 1, 1, 0)  # Europe/Berlin


def test_an_invalid_etl_yaml_with_a_job(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"etl.yaml": ETL_YAML + "  batch_size: 10\n"})
    problem_with(config_error(root), "etl.yaml:3: defaults.batch_size")


def test_an_etl_yaml_syntax_error_blames_only_etl_yaml(tmp_path: Path) -> None:
    root = make_project(tmp_path, {"etl.yaml": "defaults:\n  start_from: [2024-01-01\n"})
    error = config_error(root)
    assert all(line.startswith("etl.yaml") for line in error.problems), error.problems


def test_require_env_of_an_unknown_job(tmp_path: Path) -> None:
    project = load(make_project(tmp_path))
    with pytest.raises(ConfigError):
        project.require_env(["nope"])


# --------------------------------------------------------------------------- etl validate (CLI)
#
# Exit-code assertions through the command line (click's runner on etl.cli.main).


def _validate(root: Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from etl.cli import main

    result = CliRunner().invoke(main, ["--project", str(root), "validate"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(("files", "expected"), CASES)
def test_cli_validate_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str | None],
    expected: list[str],
) -> None:
    monkeypatch.delenv("PLANT_DB_PASSWORD", raising=False)
    code, output = _validate(make_project(tmp_path, files))
    assert code == 2, output
    for part in expected:
        assert part in output


def test_cli_validate_ok_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PLANT_DB_PASSWORD", "PLANT_DB_HOST", "PLANT_DB_PORT"):
        monkeypatch.delenv(name, raising=False)
    root = make_project(tmp_path)
    assert _validate(root)[0] == 0

    (root / "connectors" / "plant.yaml").write_text(SECRET_CONNECTOR, encoding="utf-8")
    code, output = _validate(root)
    assert code == 2, output
    assert (
        "connectors/plant.yaml:6: password: environment variable PLANT_DB_PASSWORD is not set"
        in output
    )

    monkeypatch.setenv("PLANT_DB_PASSWORD", PASSWORD)
    code, output = _validate(root)
    assert code == 0, output
    assert PASSWORD not in output


def test_cli_validate_never_prints_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANT_DB_PASSWORD", PASSWORD)
    root = make_project(
        tmp_path,
        {
            "connectors/plant.yaml": (
                "dialect: postgresql\nurl: postgresql://etl:${PLANT_DB_PASSWORD}@db/mes\n"
                f"host: db\nport: x\npasword: {PASSWORD}\n"
            )
        },
    )
    code, output = _validate(root)
    assert code == 2, output
    assert "connectors/plant.yaml" in output
    assert PASSWORD not in output


# --------------------------------------------------------------------------- object storage and locks


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            "parquet: s3://plant-data/etl\n",
            "etl.yaml: s3: missing: parquet s3://plant-data/etl needs an 's3' section",
        ),
        (
            "parquet: s3://plant-data/etl\ns3:\n  region: eu-central-1\n",
            "etl.yaml:4: s3.endpoint: missing required key",
        ),
        (
            "parquet: s3://plant-data/etl\ns3:\n  endpoint: minio:9000\n",
            "etl.yaml:5: s3.endpoint: expected an endpoint URL like",
        ),
        (
            "parquet: s3://Plant_Data/etl\ns3:\n  endpoint: http://minio:9000\n",
            "etl.yaml:3: parquet: invalid bucket name 'Plant_Data'",
        ),
        (
            "parquet: s3:///etl\ns3:\n  endpoint: http://minio:9000\n",
            "etl.yaml:3: parquet: no bucket in 's3:///etl'",
        ),
        (
            "parquet: gs://plant-data/etl\n",
            "etl.yaml:3: parquet: unsupported scheme 'gs'",
        ),
        (
            "parquet: output/parquet\ns3:\n  endpoint: http://minio:9000\n",
            "etl.yaml:4: s3: 's3' settings go with 'parquet: s3://bucket/prefix'",
        ),
        ("lock:\n  lease: 1s\n", "etl.yaml:4: lock.lease: expected at least 2s, got 1s"),
        ("lock:\n  lease: 1.5s\n", "etl.yaml:4: lock.lease: expected at least 2s, got 1.5s"),
    ],
)
def test_object_store_and_lock_settings_are_checked(
    tmp_path: Path, settings: str, expected: str
) -> None:
    root = make_project(tmp_path, {**NO_JOB, "etl.yaml": ETL_YAML + settings})
    problem_with(config_error(root), expected)


def test_object_store_settings_load(tmp_path: Path) -> None:
    settings = (
        "parquet: s3://plant-data/booking-etl/\n"
        "s3:\n  endpoint: https://s3.eu-central-1.amazonaws.com/\n  region: eu-central-1\n"
        "lock:\n  lease: 3m\n"
    )
    project = load(make_project(tmp_path, {"etl.yaml": ETL_YAML + settings}))
    assert project.spec.s3 is not None
    assert project.spec.s3.endpoint == "https://s3.eu-central-1.amazonaws.com"
    assert project.spec.lock.lease == timedelta(minutes=3)
    assert project.spec.lock.heartbeat == timedelta(seconds=45)
