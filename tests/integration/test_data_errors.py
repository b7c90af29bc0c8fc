"""PostgreSQL's errors for data it can never store are permanent: each is what
asyncpg really raises against a real database, and each parks at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from topology import RetryPolicy
from workers.runtime.retry import Park, Redeliver, RetryRules, is_data_error


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    await connection.execute(
        "CREATE TABLE orders (id text PRIMARY KEY, customer text NOT NULL,"
        " total bigint CHECK (total >= 0), qty integer)"
    )
    yield connection
    await connection.close()


CASES: list[tuple[str, str, tuple[Any, ...]]] = [
    ("bigint-from-python", "INSERT INTO orders VALUES ('o', 'c', $1)", (10**30,)),
    ("nul-in-text", "INSERT INTO orders VALUES ('o', $1, 1)", ("a\x00b",)),
    ("numeric-overflow", "INSERT INTO orders (id, customer, qty) VALUES ('o', 'c', $1::bigint)",
     (2**40,)),
    ("not-null", "INSERT INTO orders (id, customer) VALUES ('o', $1)", (None,)),
    ("check", "INSERT INTO orders VALUES ('o', 'c', $1)", (-5,)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "sql", "args"), CASES, ids=[c[0] for c in CASES])
async def test_data_postgresql_can_never_store_is_parked_at_once(
    db: asyncpg.Connection, case: str, sql: str, args: tuple[Any, ...]
) -> None:
    """Overflow, a NUL, a null or a failed check: permanent, whatever the retry policy."""
    # Given
    rules = RetryRules("orders", RetryPolicy())
    # When
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)) as caught:
        await db.execute(sql, *args)
    # Then
    assert is_data_error(caught.value), type(caught.value).__mro__
    decision = rules.decide(caught.value, 0)
    assert isinstance(decision, Park)
    assert decision.reason == "permanent"


async def test_a_listed_transient_error_is_retried_even_when_it_is_a_data_error(
    db: asyncpg.Connection,
) -> None:
    """`transient_errors` wins: a check a later event may satisfy is retried."""
    # Given
    rules = RetryRules("orders", RetryPolicy(), transient=(asyncpg.CheckViolationError,))
    # When
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await db.execute("INSERT INTO orders VALUES ('o', 'c', -1)")
    # Then
    assert isinstance(rules.decide(caught.value, 0), Redeliver)


async def test_a_unique_violation_is_not_a_data_error(db: asyncpg.Connection) -> None:
    """A duplicate key can mean a race another attempt resolves: it stays transient."""
    await db.execute("INSERT INTO orders VALUES ('o', 'c', 1)")
    with pytest.raises(asyncpg.UniqueViolationError) as caught:
        await db.execute("INSERT INTO orders VALUES ('o', 'c', 1)")
    assert not is_data_error(caught.value)
