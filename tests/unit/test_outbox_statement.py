"""`schema.with_statement`: the caller's statement with the outbox row's CTE merged in."""

from __future__ import annotations

import pytest

from workers.outbox.schema import COLUMNS, INSERT_FORMAT, with_statement


def test_the_rows_parameters_follow_the_callers() -> None:
    query = with_statement("INSERT INTO orders VALUES ($1, $2);", 2)
    assert query.startswith("WITH fleet_outbox_row AS (WITH locked AS ")
    assert query.endswith(") INSERT INTO orders VALUES ($1, $2)")
    assert "hashtext($3)" in query
    assert f"${2 + len(COLUMNS)}" in query
    assert f"${3 + len(COLUMNS)}" not in query


def test_a_with_clause_of_the_callers_own_takes_the_cte_first_keeping_recursive() -> None:
    query = with_statement("  With Recursive n(i) AS (SELECT 1) UPDATE t SET x = 1", 0)
    assert query.startswith("With Recursive fleet_outbox_row AS (")
    assert query.endswith("), n(i) AS (SELECT 1) UPDATE t SET x = 1")
    assert "hashtext($1)" in query


def test_a_name_that_only_begins_with_with_is_not_a_with_clause() -> None:
    assert with_statement("WITHOUT_TABLE", 0).startswith("WITH fleet_outbox_row AS (")


def test_the_format_style_puts_the_rows_placeholders_first() -> None:
    query = with_statement("UPDATE t SET x = %s", 1, paramstyle="format")
    assert query == f"WITH fleet_outbox_row AS ({INSERT_FORMAT}) UPDATE t SET x = %s"


def test_an_empty_statement_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        with_statement(" ; ", 0)
