"""reporting: a daily-sales projection, read from the `order-events` stream.

Not a queue worker: it reads the stream every order event is kept in
(docs/concepts/streams.md), from the first offset, and its offset commits in
the same transaction as each update, so every event counts once, across
crashes and restarts. Dropping the tables and running it under a new consumer
name (`consumer:` in fleet.yaml, with `from: first`) rebuilds the same numbers
from the stream.

Table `reporting_orders`: each order's day (when the broker stored its
OrderPlaced: the same on every read of the stream), currency, total and status.
Table `reporting_daily_sales`: per day and currency, the orders confirmed and
their revenue; a confirmation counts on the day the order was placed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fulfilment.contracts import OrderCancelled, OrderConfirmed, OrderPlaced
from workers import Context, Resources, Worker
from workers.database import Database

reporting = Worker("reporting", database=True)

SCHEMA = """
CREATE TABLE IF NOT EXISTS reporting_orders (
    order_id    text   PRIMARY KEY,
    day         date   NOT NULL,
    currency    text   NOT NULL,
    total_cents bigint NOT NULL,
    status      text   NOT NULL DEFAULT 'placed'
                       CHECK (status IN ('placed', 'confirmed', 'cancelled'))
);
CREATE TABLE IF NOT EXISTS reporting_daily_sales (
    day           date   NOT NULL,
    currency      text   NOT NULL,
    orders        int    NOT NULL,
    revenue_cents bigint NOT NULL,
    PRIMARY KEY (day, currency)
);
"""

# placed → confirmed | cancelled, once: a second confirmation counts nothing.
_CONFIRM = """
UPDATE reporting_orders SET status = 'confirmed'
WHERE order_id = $1 AND status = 'placed'
RETURNING day, currency, total_cents
"""
_COUNT = """
INSERT INTO reporting_daily_sales (day, currency, orders, revenue_cents) VALUES ($1, $2, 1, $3)
ON CONFLICT (day, currency) DO UPDATE SET
    orders = reporting_daily_sales.orders + 1,
    revenue_cents = reporting_daily_sales.revenue_cents + EXCLUDED.revenue_cents
"""


@reporting.on_startup
async def create_tables(resources: Resources) -> None:
    await resources.pool.execute(SCHEMA)


@reporting.handles(OrderPlaced)
async def placed(event: OrderPlaced, ctx: Context) -> None:
    await ctx.db.execute(
        "INSERT INTO reporting_orders (order_id, day, currency, total_cents) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING",
        event.order_id,
        stored_on(ctx),
        event.currency,
        event.total_cents,
    )


@reporting.handles(OrderConfirmed)
async def confirmed(event: OrderConfirmed, ctx: Context) -> None:
    row = await ctx.db.fetchrow(_CONFIRM, event.order_id)
    if row is not None:  # None: never placed (before the stream's retention), or counted
        await ctx.db.execute(_COUNT, row["day"], row["currency"], row["total_cents"])


@reporting.handles(OrderCancelled)
async def cancelled(event: OrderCancelled, ctx: Context) -> None:
    await ctx.db.execute(
        "UPDATE reporting_orders SET status = 'cancelled' "
        "WHERE order_id = $1 AND status = 'placed'",
        event.order_id,
    )


def stored_on(ctx: Context) -> date:
    """The UTC day the broker stored the event in the stream."""
    stored_ms = int(ctx.headers["x-fleet-stream-timestamp"])
    return datetime.fromtimestamp(stored_ms / 1000, UTC).date()


async def daily_sales(db: Database) -> list[tuple[date, str, int, int]]:
    """(day, currency, orders confirmed, revenue in cents), by day."""
    rows = await db.fetch(
        "SELECT day, currency, orders, revenue_cents FROM reporting_daily_sales "
        "ORDER BY day, currency"
    )
    return [(r["day"], r["currency"], r["orders"], r["revenue_cents"]) for r in rows]


async def drop_projection(db: Database) -> None:
    """Drop the projection's tables (to rebuild them from the stream)."""
    await db.execute("DROP TABLE IF EXISTS reporting_daily_sales, reporting_orders")
