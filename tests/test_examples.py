"""The catalogue at the repository's top level (connectors/, mappings/, jobs/) validates and
documents every feature; the starter ``etl init`` writes validates as it is.

Environment variables are discovered from the files themselves, so adding a connector with a
new ``${VAR}`` needs no change here.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import etl
from etl.config.loader import load_project
from etl.config.models import DIALECTS, ConnectorSpec, Project
from etl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("connectors", "mappings", "jobs")
STARTER = Path(etl.__file__).parent / "templates" / "project"
YAML_FILES = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.y*ml"))

# The same tokens yamlfile.py substitutes: "$$" (a literal "$") or ${VAR} / ${VAR:-default}.
_ENV_TOKEN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def env_references(paths: list[Path] = YAML_FILES, *, values_only: bool = False) -> dict[str, bool]:
    """Every ${VAR} -> whether some use of it lacks a default.

    By default the whole text is searched (comments included: a superset is harmless for dummy
    values); ``values_only`` looks only at the YAML values the loader substitutes.
    """
    found: dict[str, bool] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        chunks = _strings(yaml.safe_load(text)) if values_only else [text]
        for chunk in chunks:
            for match in _ENV_TOKEN.finditer(chunk):
                name, default = match.group(1), match.group(2)
                if name is not None:
                    found[name] = found.get(name, False) or default is None
    return found


def _strings(data: object) -> list[str]:
    if isinstance(data, dict):
        return [s for value in data.values() for s in _strings(value)]
    if isinstance(data, list):
        return [s for value in data for s in _strings(value)]
    return [data] if isinstance(data, str) else []


def dummy_env() -> dict[str, str]:
    return {name: f"dummy-{name.lower()}" for name in env_references()}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalogue as a project: its three folders and the starter's etl.yaml."""
    root = tmp_path_factory.mktemp("catalogue")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, root / folder)
    shutil.copyfile(STARTER / "etl.yaml", root / "etl.yaml")
    return root


@pytest.fixture(scope="module")
def project(catalogue: Path) -> Project:
    loaded = load_project(catalogue, env=dummy_env())
    loaded.require_env()
    return loaded


def test_files_exist() -> None:
    for folder in FOLDERS:
        assert (ROOT / folder).is_dir() and not (ROOT / folder).is_symlink(), (
            f"{folder}/ must be a real folder"
        )
        assert any((ROOT / folder).glob("*.yaml")), f"no example in {folder}/"
    assert env_references(), "the examples should show ${ENV} variables"


def test_the_checkout_is_not_a_project() -> None:
    """No etl.yaml at the root: an ``etl`` command run in the checkout finds no project there."""
    assert not (ROOT / "etl.yaml").exists()
    cli = pytest.importorskip("etl.cli")
    from click.testing import CliRunner

    for command in (["status"], ["validate"], ["run", "--all"]):
        result = CliRunner().invoke(cli.main, ["--project", str(ROOT), *command])
        assert result.exit_code == 2, result.output
        assert "not a booking-etl project" in result.stderr
    assert not (ROOT / "store.sqlite").exists()


def test_validates_with_every_variable_set(project: Project) -> None:
    assert project.jobs
    assert project.spec.store == "sqlite:///store.sqlite"
    assert project.spec.parquet == "output/parquet"
    assert project.spec.defaults.start_from is not None


def test_every_connector_and_mapping_is_used_by_a_job(project: Project) -> None:
    used_connectors = {job.connector_name for job in project.jobs.values()}
    used_mappings = {job.mapping_name for job in project.jobs.values()}
    assert set(project.connectors) - used_connectors == set()
    assert set(project.mappings) - used_mappings == set()


def test_a_connector_for_every_dialect(project: Project) -> None:
    dialects = {spec.dialect for spec in project.connectors.values()}
    assert {"mssql", "mysql", "mariadb", "oracle", "postgresql", "sqlite"} <= dialects
    assert set(DIALECTS) <= dialects


def test_mappings_of_both_structures(project: Project) -> None:
    structures = {spec.structure for spec in project.mappings.values()}
    assert structures == {"bookings", "orders"}


def test_every_unset_variable_without_default_is_reported(catalogue: Path) -> None:
    required = {name for name, needed in env_references(values_only=True).items() if needed}
    assert required, "passwords must come from ${VAR} without a default"
    bare = load_project(catalogue, env={})
    with pytest.raises(ConfigError) as info:
        bare.require_env()
    reported = set(re.findall(r"environment variable (\w+) is not set", str(info.value)))
    assert reported == required


def test_passwords_come_from_the_environment_only(project: Project) -> None:
    env = dummy_env()
    for path in sorted((ROOT / "connectors").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert "url" not in raw, f"{path.name}: show host/user/password, not a URL"
        if raw.get("kind") == "http":  # its secret is the OAuth2 client secret
            secret = str(raw["http"]["auth"]["client_secret"])
            assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*\}", secret), f"{path.name}: ${{VAR}} only"
            spec = project.connectors[path.stem].http
            assert spec is not None and spec.auth.client_secret is not None
            assert spec.auth.client_secret.get_secret_value() in project.secrets
            continue
        if raw.get("kind") == "files" or raw["dialect"] == "sqlite":
            continue
        reference = re.fullmatch(r"\$\{([A-Z][A-Z0-9_]*)\}", str(raw.get("password")))
        assert reference, f"{path.name}: the password must be exactly ${{VAR}}"
        password = project.connectors[path.stem].password
        assert password is not None
        assert password.get_secret_value() == env[reference.group(1)]


def test_connectors_have_a_real_plant_time_zone(project: Project) -> None:
    for name, spec in project.connectors.items():
        assert "/" in spec.timezone, f"{name}: use an IANA plant zone, not {spec.timezone!r}"


def test_mssql_connector_shows_the_odbc_driver(project: Project) -> None:
    mssql: list[ConnectorSpec] = [c for c in project.connectors.values() if c.dialect == "mssql"]
    assert mssql and all(c.driver is None for c in mssql)  # detection picks the installed driver
    text = (ROOT / "connectors" / "plant1_mssql.yaml").read_text()
    assert "# driver: ODBC Driver 18 for SQL Server" in text  # and the file shows how to pin one
    assert any("Encrypt" in c.options and "TrustServerCertificate" in c.options for c in mssql)
    oracle = [c for c in project.connectors.values() if c.dialect == "oracle"]
    assert any(c.service_name for c in oracle)


def test_the_mapping_features_are_demonstrated(project: Project) -> None:
    mappings = list(project.mappings.values())
    specs = [s for m in mappings for s in m.column_specs().values()]
    assert any(s.date is not None and s.time is not None for s in specs), "date + time columns"
    assert any(s.trim is True for s in specs), "trim of blank-padded codes"
    assert any(m.source.query is not None for m in mappings), "a custom query"
    assert any(m.source.table is not None for m in mappings)
    codes = [c for m in mappings if m.events for c in (*m.events.START, *m.events.END)]
    assert any(isinstance(c, int) for c in codes), "integer vendor codes"
    assert any(isinstance(c, str) for c in codes)
    assert any(m.events and m.events.ignore for m in mappings), "ignored codes"
    ops = {f.op for m in mappings for f in m.filters}
    assert "eq" in ops


def test_custom_queries_are_accepted_as_read_only(project: Project) -> None:
    from etl.config.queries import check_custom_query

    checked = 0
    for name, job in project.jobs.items():
        if job.mapping.source.query is not None:
            check_custom_query(job.mapping.source.query, job.connector.dialect, f"jobs/{name}.yaml")
            checked += 1
    assert checked


def test_jobs_schedule_with_a_time_zone_and_weekday_names(project: Project) -> None:
    scheduled = [job for job in project.jobs.values() if job.spec.schedule]
    assert scheduled
    for job in scheduled:
        assert job.spec.timezone, f"{job.name}: a schedule without a time zone"
        # Weekday numbers mean different days in crontab (0 = Sunday) and APScheduler 3
        # (0 = Monday): the examples use names.
        assert not re.search(r"\d", job.spec.schedule.split()[4]), job.spec.schedule
    assert any(job.spec.start_from is not None for job in project.jobs.values())
    assert any(job.spec.reread is not None and job.spec.safety_lag is not None for job in scheduled)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_is_documented(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    comments = [line for line in lines if line.lstrip().startswith("#")]
    assert lines[0].startswith("#"), "start with a comment saying what the file is"
    assert len(comments) >= 8, f"only {len(comments)} comment lines"


def test_the_catalogue_has_the_layouts_met_in_practice(project: Project) -> None:
    mappings = project.mappings
    assert {"hydra_bde", "sap_afru_confirmations", "bookings_generic", "orders_generic"} <= set(
        mappings
    )
    assert any(m.fold.logins == "count" for m in mappings.values()), "terminal logins"
    assert any(
        m.structure == "orders" and "updated_at" in m.column_specs() for m in mappings.values()
    ), "an order table with a last-change column"
    descriptions = " ".join(job.spec.description or "" for job in project.jobs.values())
    for kind in ("nightly", "hourly", "backfill"):
        assert kind in descriptions, f"no {kind} example job"


def test_cli_validate_accepts_the_catalogue(
    catalogue: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = pytest.importorskip("etl.cli")
    from click.testing import CliRunner

    for name, value in dummy_env().items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli.main, ["--project", str(catalogue), "validate"])
    assert result.exit_code == 0, result.output
    for value in dummy_env().values():
        assert value not in result.output


# --------------------------------------------------------------------------- the starter


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``etl ARGS`` run in ``cwd`` (the project is found from there, as a user's shell finds it),
    with no project variables in the environment."""
    from click.testing import CliRunner

    from etl.cli import main

    unset: dict[str, str | None] = {name: None for name in env_references(STARTER_FILES)}
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, list(args), env=unset)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


STARTER_FILES = sorted(p for p in STARTER.rglob("*.y*ml") if p.is_file())


def test_init_writes_a_starter_that_validates_at_once(tmp_path: Path) -> None:
    init = _run("init", "plant", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    root = tmp_path / "plant"
    written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(STARTER).as_posix() for p in STARTER_FILES)
    validate = _run("validate", cwd=root)
    assert validate.returncode == 0, validate.stderr
    assert "ok: 1 connector(s), 1 mapping(s), 1 job(s)" in validate.stdout
    # the unset password is a warning until a job that uses it is enabled
    assert "PLANT_DB_PASSWORD is not set (no enabled job uses it)" in validate.stderr
    assert len(written) <= 4 and sum(len(p.read_text().splitlines()) for p in STARTER_FILES) < 250


@pytest.mark.parametrize("path", STARTER_FILES, ids=lambda p: str(p.relative_to(STARTER)))
def test_every_starter_file_is_commented(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#"), "start with a comment saying what the file is"
    assert sum(line.lstrip().startswith("#") for line in lines) >= 5


def test_read_only_commands_create_no_store(tmp_path: Path) -> None:
    """Read-only commands on a project whose jobs never ran leave it as it was."""
    assert _run("init", "plant", cwd=tmp_path).returncode == 0
    root = tmp_path / "plant"
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    status = _run("status", cwd=root)
    assert status.returncode == 0, status.stderr
    assert "(not created yet: no job has run)" in status.stdout
    assert "bookings: never run" in status.stdout
    for command in (["status", "--json"], ["status", "--check"], ["cron"], ["validate"]):
        assert _run(*command, cwd=root).returncode == 0, command
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
