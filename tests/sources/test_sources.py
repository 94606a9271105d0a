"""A bookings job end to end against the real PostgreSQL and MariaDB servers as sources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.config.loader import load_project
from etl.config.models import ConnectorSpec
from etl.pipeline.sync import run_job
from etl.sources.sql.engine import ReadOnlyViolation, open_source
from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip

MAPPING = """\
structure: bookings
source: {{table: {table}}}
columns:
  timestamp: BUCHUNGSZEIT
  order_code: AUNR
  machine_code: MASCHNR
  event: KENN
events: {{START: [A], END: [E]}}
"""


@pytest.fixture(params=["postgresql", "mariadb"])
def source(request: pytest.FixtureRequest) -> Iterator[tuple[str, sa.URL, str]]:
    """A booking table on a real server (naive Berlin wall-clock), dropped afterwards."""
    dialect = request.param
    url = server_or_skip(POSTGRES_URL if dialect == "postgresql" else MARIADB_URL, dialect)
    table = f"bde_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    stamp = "timestamp(6)" if dialect == "postgresql" else "datetime(6)"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (MASCHNR char(8), AUNR varchar(20), KENN varchar(3), "
                f"BUCHUNGSZEIT {stamp})"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:m, :o, :k, :t)"),
            [
                {
                    "m": "M1",
                    "o": "4711",
                    "k": "A",
                    "t": "2026-10-25 02:30:00.250000",
                },  # repeated hour
                {"m": "M1", "o": "4711", "k": "E", "t": "2026-10-25 04:00:00.500000"},
                {"m": "M2", "o": "4712", "k": "A", "t": "2026-10-26 06:00:00"},
            ],
        )
    try:
        yield dialect, url, table
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def _project(root: Path, dialect: str, url: sa.URL, table: str) -> Path:
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True)
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-10-20}\n")
    (root / "connectors" / "plant.yaml").write_text(
        f"dialect: {dialect}\nhost: {url.host}\nport: {url.port or (5432 if dialect == 'postgresql' else 3306)}\n"
        f"database: {url.database}\nuser: {url.username}\ntimezone: Europe/Berlin\n"
    )
    mapping = MAPPING.format(table=table)
    if dialect == "postgresql":  # unquoted names were folded to lower case by PostgreSQL
        for name in ("BUCHUNGSZEIT", "AUNR", "MASCHNR", "KENN"):
            mapping = mapping.replace(f": {name}", f": {name.lower()}")
    (root / "mappings" / "bde.yaml").write_text(mapping)
    (root / "jobs" / "bde.yaml").write_text("connector: plant\nmapping: bde\n")
    return root


def test_bookings_job_on_a_real_server(tmp_path: Path, source: tuple[str, sa.URL, str]) -> None:
    dialect, url, table = source
    root = _project(tmp_path / "p", dialect, url, table)
    result = run_job(load_project(root), "bde")
    assert (result.rows_read, result.runs_total, result.runs_open) == (3, 2, 1)
    runs = pd.read_parquet(root / "output" / "parquet" / "runs").sort_values("start")
    first = runs.iloc[0]
    assert first["machine_code"] == "M1"  # char(8) padding trimmed
    # 02:30:00.25 in the repeated hour is read as summer time (the documented default), microseconds kept
    assert first["start"] == pd.Timestamp("2026-10-25 00:30:00.250000", tz="UTC")
    assert first["end"] == pd.Timestamp("2026-10-25 03:00:00.500000", tz="UTC")
    assert first["duration_s"] == pytest.approx(2.5 * 3600 + 0.25)


def test_source_sessions_refuse_writes(tmp_path: Path, source: tuple[str, sa.URL, str]) -> None:
    dialect, url, table = source
    spec = ConnectorSpec.model_validate(
        {
            "dialect": dialect,
            "host": url.host,
            "port": url.port,
            "database": url.database,
            "user": url.username,
        }
    )
    src = open_source("plant", spec, tmp_path, [])
    try:
        with src.connect() as conn, pytest.raises(ReadOnlyViolation):
            conn.execute(sa.text(f"DELETE FROM {table}"))
        raw = (
            src.engine.raw_connection()
        )  # below the statement guard: the session itself is read-only
        try:
            cursor = raw.cursor()
            with pytest.raises(Exception, match=r"(?i)read.only"):
                cursor.execute(f"DELETE FROM {table}")
        finally:
            raw.close()
    finally:
        src.close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 3
    engine.dispose()


def test_millisecond_ticks_and_microseconds_survive_end_to_end(tmp_path: Path) -> None:
    """SQL Server-like .003/.007 ticks and microseconds reach the Parquet unchanged."""
    url = server_or_skip(POSTGRES_URL, "postgresql")
    table = f"ticks_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    stamps = ["2026-10-20 06:00:00.003", "2026-10-20 07:00:00.007", "2026-10-20 08:00:00.123456"]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (maschnr char(8), aunr varchar(20), kenn varchar(3), buchungszeit timestamp(6))"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES ('M1', :o, :k, :t)"),
            [
                {"o": "A", "k": "A", "t": stamps[0]},
                {"o": "A", "k": "E", "t": stamps[1]},
                {"o": "B", "k": "A", "t": stamps[2]},
            ],
        )
    try:
        root = _project(tmp_path / "p", "postgresql", url, table)
        run_job(load_project(root), "bde")
        runs = pd.read_parquet(root / "output" / "parquet" / "runs").sort_values("start")
        berlin = [pd.Timestamp(s, tz="Europe/Berlin").tz_convert("UTC") for s in stamps]
        assert runs["start"].tolist() == [berlin[0], berlin[2]]
        assert runs["end"].iloc[0] == berlin[1]
        assert runs["duration_s"].iloc[0] == pytest.approx(3600.004)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
