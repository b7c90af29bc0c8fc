"""inventory: reserves stock for placed orders and gives it back when an order fails.

Tables:
- `inventory_stock`: per SKU, the `initial` level (seeded on first start) and
  what is `available`. Stock is conserved: for every SKU,
  initial = available + the quantities of reservations `held`.
- `inventory_reservations`: one row per order seen: `held` (stock set aside),
  `released` (given back), `refused` (not enough stock: nothing held) or
  `void` (the order was cancelled before it reached inventory, so a late
  OrderPlaced reserves nothing).

Seed stock: FLEET_INVENTORY_STOCK ("apple=1000,plum=50"), default `DEFAULT_STOCK`.
A SKU that already has a row keeps its level.
"""

from __future__ import annotations

import json
import os
import uuid

from fulfilment.contracts import (
    PAYMENT_DECLINED,
    OrderCancelled,
    OrderPlaced,
    PaymentDeclined,
    StockRejected,
    StockReleased,
    StockReserved,
)
from fulfilment.workers import store
from workers import Context, Resources, Worker

inventory = Worker("inventory", database=True)

#: Stock seeded on first start, per SKU. Quinces are never in stock.
DEFAULT_STOCK = {"apple": 1_000_000, "pear": 500_000, "plum": 200, "quince": 0}

SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory_stock (
    sku       text    PRIMARY KEY,
    initial   integer NOT NULL,
    available integer NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS inventory_reservations (
    order_id       text        PRIMARY KEY,
    status         text        NOT NULL
                               CHECK (status IN ('new', 'held', 'released', 'refused', 'void')),
    reservation_id text,
    lines          jsonb       NOT NULL DEFAULT '{}',
    reason         text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
"""
_RESERVATIONS = "inventory_reservations"


def seed_stock() -> dict[str, int]:
    """The stock to seed: FLEET_INVENTORY_STOCK, else DEFAULT_STOCK."""
    text = os.environ.get("FLEET_INVENTORY_STOCK", "").strip()
    if not text:
        return dict(DEFAULT_STOCK)
    stock = {}
    for item in text.split(","):
        sku, _, qty = item.partition("=")
        stock[sku.strip()] = int(qty)
    return stock


@inventory.on_startup
async def create_tables(resources: Resources) -> None:
    pool = await store.create_tables(resources, SCHEMA)
    await pool.executemany(
        "INSERT INTO inventory_stock (sku, initial, available) VALUES ($1, $2, $2) "
        "ON CONFLICT (sku) DO NOTHING",
        sorted(seed_stock().items()),
    )


@inventory.handles(OrderPlaced)
async def reserve(event: OrderPlaced, ctx: Context) -> StockReserved | StockRejected | None:
    """Reserve every line, or none of them."""
    _, created = await store.claim(ctx.db, _RESERVATIONS, event.order_id, "new")
    if not created:
        return None  # decided already, or cancelled before it got here
    wanted: dict[str, int] = {}
    for line in event.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.qty
    # Rows locked in SKU order, the same order every handler takes them in: no deadlocks.
    rows = await ctx.db.fetch(
        "SELECT sku, available FROM inventory_stock WHERE sku = ANY($1::text[]) "
        "ORDER BY sku FOR UPDATE",
        sorted(wanted),
    )
    available = {row["sku"]: row["available"] for row in rows}
    for sku, qty in sorted(wanted.items()):
        if available.get(sku, 0) < qty:
            reason = "unknown sku" if sku not in available else "out of stock"
            await _set(ctx, event.order_id, "refused", reason=f"{reason}: {sku}")
            return StockRejected(order_id=event.order_id, reason=reason, sku=sku)
    await ctx.db.executemany(
        "UPDATE inventory_stock SET available = available - $2 WHERE sku = $1",
        sorted(wanted.items()),
    )
    reservation_id = uuid.uuid5(uuid.NAMESPACE_URL, f"reservation:{event.order_id}").hex
    await _set(ctx, event.order_id, "held", reservation_id=reservation_id, lines=wanted)
    return StockReserved(
        order_id=event.order_id,
        customer_id=event.customer_id,
        reservation_id=reservation_id,
        lines=event.lines,
        total_cents=event.total_cents,
        currency=event.currency,
    )


@inventory.handles(PaymentDeclined)
async def release_declined(event: PaymentDeclined, ctx: Context) -> StockReleased | None:
    """Compensation: the payment failed, give the stock back (orders then cancels)."""
    return await _release(ctx, event.order_id, PAYMENT_DECLINED, event.reason)


@inventory.handles(OrderCancelled)
async def release_cancelled(event: OrderCancelled, ctx: Context) -> StockReleased | None:
    """The order ended without fulfilment (its deadline, say): give back what it holds."""
    return await _release(ctx, event.order_id, "order-cancelled", event.reason)


async def _release(ctx: Context, order_id: str, reason: str, detail: str) -> StockReleased | None:
    row, created = await store.claim(ctx.db, _RESERVATIONS, order_id, "void")
    if created or row["status"] != "held":
        return None  # nothing held: never reserved, refused, or released already
    lines: dict[str, int] = json.loads(row["lines"])
    await ctx.db.executemany(
        "UPDATE inventory_stock SET available = available + $2 WHERE sku = $1",
        sorted(lines.items()),
    )
    await _set(ctx, order_id, "released", reason=f"{reason}: {detail}")
    return StockReleased(
        order_id=order_id, reservation_id=row["reservation_id"], reason=reason, detail=detail
    )


async def _set(
    ctx: Context,
    order_id: str,
    status: str,
    *,
    reason: str | None = None,
    reservation_id: str | None = None,
    lines: dict[str, int] | None = None,
) -> None:
    await ctx.db.execute(
        "UPDATE inventory_reservations SET status = $2, reason = coalesce($3, reason), "
        "reservation_id = coalesce($4, reservation_id), lines = coalesce($5::jsonb, lines), "
        "updated_at = now() WHERE order_id = $1",
        order_id,
        status,
        reason,
        reservation_id,
        json.dumps(lines) if lines is not None else None,
    )
