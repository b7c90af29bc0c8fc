"""Documented usage of ``ctx.db`` (the `Database` Protocol) that must pass mypy --strict.

A line marked `type: ignore[...]` must fail type checking (see handlers.py): what
the Protocol leaves out is what a handler must not do with the inbox transaction's
connection (README: "What a handler may do with ctx.db").
"""

from __future__ import annotations

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy
from fulfilment.contracts import OrderPlaced

from workers import Context, Database, Worker
from workers.context import NoDatabase

ledger = Worker("ledger", database=True)


@ledger.handles(OrderPlaced)
async def book(event: OrderPlaced, ctx: Context) -> None:
    """The queries a handler runs, with asyncpg's arguments."""
    await ctx.db.execute("SET LOCAL lock_timeout = '2s'")
    await ctx.db.execute("SELECT pg_advisory_xact_lock(hashtext($1))", event.customer_id)
    await ctx.db.execute(
        "INSERT INTO bookings VALUES ($1, $2)", event.order_id, event.total_cents, timeout=5.0
    )
    await ctx.db.executemany(
        "INSERT INTO booked_lines VALUES ($1, $2, $3)",
        [(event.order_id, line.sku, line.qty) for line in event.lines],
    )
    rows: list[Record] = await ctx.db.fetch("SELECT sku FROM stock WHERE sku = ANY($1)", ["a"])
    total = await ctx.db.fetchval("SELECT sum(qty) FROM booked_lines WHERE order_id = $1", "o")
    row = await ctx.db.fetchrow("SELECT status FROM bookings WHERE order_id = $1", event.order_id)
    if row is not None:
        status: str = row["status"]
        used(status)
    async with ctx.db.transaction():  # a savepoint within the delivery's transaction
        await ctx.db.execute("UPDATE stock SET held = held + 1")
    used(rows, total)


async def no_row_check(ctx: Context) -> str:
    """fetchrow may find no row: the handler has to say what then."""
    row = await ctx.db.fetchrow("SELECT status FROM bookings")
    status: str = row["status"]  # type: ignore[index]
    return status


async def own_commit(ctx: Context) -> None:
    """The runtime commits the delivery's transaction, with its processed mark."""
    await ctx.db.execute("SELECT 1")
    await ctx.db.commit()  # type: ignore[attr-defined]


async def isolation_of_its_own(ctx: Context) -> None:
    """ctx.db.transaction() is always nested: no isolation level of its own."""
    async with ctx.db.transaction(isolation="serializable"):  # type: ignore[call-arg]
        pass


async def session_state(ctx: Context) -> None:
    """Nothing that would outlive the transaction on a pooled connection."""
    await ctx.db.add_listener("orders", print)  # type: ignore[attr-defined]
    await ctx.db.prepare("SELECT 1", name="mine")  # type: ignore[attr-defined]
    await ctx.db.close()  # type: ignore[attr-defined]


async def helpers_take_any_database(
    connection: asyncpg.Connection, proxy: PoolConnectionProxy, ctx: Context
) -> None:
    """A helper typed ``db: Database`` takes ctx.db, a connection or a pooled one."""

    async def count(db: Database) -> int:
        n: int = await db.fetchval("SELECT count(*) FROM bookings")
        return n

    for db in (ctx.db, connection, proxy, NoDatabase("ledger")):
        await count(db)


def used(*values: object) -> None:
    """Keeps the typed names above from being unused."""
