"""A custom ``source.query``, parsed in the source's SQL dialect (sqlglot) to prove it is one
read-only SELECT: checked when the project loads and again before it runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from etl.config.readonly import NOT_SQL, query_problems
from etl.errors import ConfigError


def check_custom_query(
    sql: str, dialect: str, where: str, allow_functions: Iterable[str] = ()
) -> None:
    """A custom ``source.query`` must be one SELECT/WITH on the read-only allowlist
    (etl/config/readonly.py): tables and views, pure built-in functions (plus ``allow_functions``),
    no locking clause, no executable comment; else a ConfigError naming each construct."""
    problems = query_problems(sql, dialect, allow_functions)
    if problems:
        raise ConfigError(
            [
                f"{where}: source.query {p}"
                if p.startswith(NOT_SQL)
                else f"{where}: source.query: refused {p}"
                for p in problems
            ]
        )
