"""MySQL/MariaDB zero dates through the Arrow path (connectorx panics on them): with
``fetch: arrow`` a zero year, month or day in a DATE, DATETIME or TIMESTAMP column is read as
the SQLAlchemy path reads it, a value or an anomaly, never a panic or an internal error."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.sources.sql.arrow import zero_guard, zero_restore
from tests.pipeline.test_far_dates import _outcome, _project


def _zero_table(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("SET SESSION sql_mode = ''"))
        conn.execute(
            sa.text(
                "CREATE TABLE orders (fanr varchar(9), arbpl varchar(9), start_zeit datetime(6),"
                " ende_zeit timestamp NULL, tag date)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO orders VALUES"
                " ('A', 'M1', now() - interval 3 day, now() - interval 2 day, curdate()),"
                " ('B', 'M1', now() - interval 2 day, '0000-00-00 00:00:00', '0000-00-00'),"
                " ('C', 'M2', '2026-00-15 10:00:00', now(), '2026-02-00'),"
                " ('D', 'M3', now() - interval 1 day, NULL, NULL),"
                " ('E', 'M4', now() - interval 30 hour, now() - interval 1 day, curdate())"
            )
        )
    engine.dispose()


@pytest.mark.parametrize("end", ["ende_zeit", "{column: ende_zeit, sentinels: ['0000-00-00']}"])
def test_fetch_arrow_reads_zero_dates_as_sqlalchemy_does(
    tmp_path: Path, mariadb_database: str, end: str
) -> None:
    _zero_table(mariadb_database)
    outcomes = {}
    for fetch in ("sqlalchemy", "arrow"):
        _project(tmp_path / fetch, mariadb_database, "mariadb", fetch, end)
        outcomes[fetch] = _outcome(tmp_path / fetch)
    runs, found = outcomes["arrow"]
    assert outcomes["arrow"] == outcomes["sqlalchemy"]
    assert {"A", "D", "E"} <= set(runs)
    assert "C" in {a[0] for a in found}  # a zero month: an anomaly with its text
    assert any("2026-00-15" in str(a[2]) for a in found)


def test_zero_dates_in_a_date_column_stay_text_on_the_arrow_path(mariadb_database: str) -> None:
    import connectorx

    _zero_table(mariadb_database)
    engine = sa.create_engine(mariadb_database)
    with engine.connect() as conn:
        sql = zero_guard("SELECT fanr, tag, start_zeit FROM orders", conn)
        assert zero_guard("SELECT fanr FROM orders", conn) == "SELECT fanr FROM orders"
    engine.dispose()
    url = sa.make_url(mariadb_database).set(drivername="mysql")
    batches = connectorx.read_sql(
        url.render_as_string(hide_password=False), sql, return_type="arrow_stream"
    )
    restored = [zero_restore(b) for b in batches if b.num_rows]
    assert {tuple(b.schema.names) for b in restored} == {("fanr", "tag", "start_zeit")}
    values = {
        row["fanr"]: (row["tag"], row["start_zeit"]) for b in restored for row in b.to_pylist()
    }
    assert values["B"][0] == "0000-00-00"
    assert values["C"][0] == "2026-02-00" and values["C"][1].startswith("2026-00-15 10:00:00")
    assert values["D"][0] is None
    # the other values of such a column are ISO 8601 text the mapping parses
    assert isinstance(date.fromisoformat(values["A"][0]), date)
    assert isinstance(datetime.fromisoformat(values["A"][1]), datetime)
