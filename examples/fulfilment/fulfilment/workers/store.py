"""What the reference workers share about their state in PostgreSQL.

Each worker owns its tables and creates them when it starts (`create_tables`).
Handlers write through `ctx.db`, the inbox transaction, so a handler's effects
commit together with the mark that the message was processed: a redelivery
finds the mark and changes nothing (exactly-once effect).

Per order, each worker keeps one row whose status it moves forward. `claim`
locks that row for the rest of the transaction, so two events about one order
(a charge and a cancellation, say) are handled one after the other, never
interleaved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers import Database, Resources
from workers.errors import DatabaseRequired

if TYPE_CHECKING:
    from asyncpg import Record


def require_database(resources: Resources) -> Any:
    """The worker's connection pool (each reference worker is declared with
    ``database=True``, so fleet refuses to start it without one).

    Raises:
        DatabaseRequired: the worker runs without a database all the same.
    """
    if resources.pool is None:
        raise DatabaseRequired(resources.name)
    return resources.pool


async def create_tables(resources: Resources, ddl: str) -> Any:
    """Create the worker's tables if missing; returns the pool.

    Replicas starting together take turns under an advisory lock, so no two
    run the same CREATE TABLE at once.
    """
    pool = require_database(resources)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"fleet.worker.{resources.name}"
        )
        await connection.execute(ddl)
    return pool


async def claim(db: Database, table: str, order_id: str, status: str) -> tuple[Record, bool]:
    """Lock the order's row in `table` until the transaction ends; (row, created).

    A missing row is created with `status`. A concurrent transaction on the
    same order waits here until the first one commits or rolls back.

    Raises:
        LookupError: the row that kept it from being created is gone (rows are
            never deleted; retried like any transient error).
    """
    created = await db.fetchrow(
        f"INSERT INTO {table} (order_id, status) VALUES ($1, $2) "
        "ON CONFLICT (order_id) DO NOTHING RETURNING *",
        order_id,
        status,
    )
    if created is not None:
        return created, True
    row = await db.fetchrow(f"SELECT * FROM {table} WHERE order_id = $1 FOR UPDATE", order_id)
    if row is None:
        raise LookupError(f"{table}: the row of order {order_id!r} vanished")
    return row, False


async def note_attempt(pool: Any, table: str, order_id: str, key: str) -> None:
    """Record, committed at once, that an external call with idempotency `key` is about
    to be made for the order.

    The call's own effects commit with the handler's transaction; if the
    process dies after the external system acted and before that commit, this
    row is what lets a later cancellation undo it there.
    """
    await pool.execute(
        f"INSERT INTO {table} (order_id, idempotency_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        order_id,
        key,
    )


async def attempted_keys(db: Database, table: str, order_id: str) -> list[str]:
    """The idempotency keys of every external call attempted for the order."""
    rows = await db.fetch(
        f"SELECT idempotency_key FROM {table} WHERE order_id = $1 ORDER BY at", order_id
    )
    return [row["idempotency_key"] for row in rows]
