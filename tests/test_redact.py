"""etl.redact: secrets never reach messages, logs or the store."""

from __future__ import annotations

import pytest

from etl.redact import redact


def test_known_secrets_are_replaced_everywhere() -> None:
    text = "login failed for s3cr3t-pw (password s3cr3t-pw)"
    assert redact(text, ["s3cr3t-pw"]) == "login failed for *** (password ***)"


def test_longer_secrets_are_replaced_before_their_prefixes() -> None:
    # 'abc' first would leave 'def' of the longer secret behind
    assert redact("abcdef and abc", ["abc", "abcdef"]) == "*** and ***"


def test_empty_secrets_are_ignored() -> None:
    assert redact("nothing to hide", ["", ""]) == "nothing to hide"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cannot connect to postgresql+psycopg://etl:hunter2@db:5432/mes",
            "cannot connect to postgresql+psycopg://etl:***@db:5432/mes",
        ),
        ("mysql+pymysql://u:p%40ss@h:3306/d", "mysql+pymysql://u:***@h:3306/d"),
        (
            "oracle+oracledb://scott:tiger@db:1521/?service_name=MES",
            "oracle+oracledb://scott:***@db:1521/?service_name=MES",
        ),
        (
            "a: mssql+pyodbc://sa:Pa55@sql1/BDE, b: postgresql://x:y@h/d",
            "a: mssql+pyodbc://sa:***@sql1/BDE, b: postgresql://x:***@h/d",
        ),
    ],
)
def test_passwords_inside_urls_are_hidden_without_being_listed(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://etl@db/mes",
        "sqlite:///var/lib/etl/store.sqlite",
        "https://example.com/docs#user:pass",
        "12:30:00 run finished",
    ],
)
def test_text_without_a_url_password_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_listed_secret_and_url_password_together() -> None:
    text = "postgresql://etl:hunter2@db/mes failed; retry with hunter2?"
    assert "hunter2" not in redact(text, ["hunter2"])
