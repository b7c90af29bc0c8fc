"""orders: follows each order to exactly one end, confirmed or cancelled.

Table `orders`: one row per order, `pending` until the first deciding event
moves it to `confirmed` or `cancelled`; nothing moves it again, so a late event
never resurrects a cancelled order. Placing an order arms its deadline: an
OrderDeadline that waits in the delay queue `order-deadlines` and comes back
here after the queue's ttl.
"""

from __future__ import annotations

from contracts.fulfilment import (
    DEADLINE,
    OUT_OF_STOCK,
    PAYMENT_DECLINED,
    OrderCancelled,
    OrderConfirmed,
    OrderDeadline,
    OrderPlaced,
    ShipmentScheduled,
    StockRejected,
    StockReleased,
)
from workers import Context, Resources, Worker
from workers.fulfilment import store

orders = Worker("orders")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id       text        PRIMARY KEY,
    correlation_id text,
    customer_id    text,
    total_cents    bigint,
    currency       text,
    status         text        NOT NULL DEFAULT 'pending'
                               CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    reason         text,
    detail         text,
    shipment_id    text,
    placed_at      timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_correlation ON orders (correlation_id);
CREATE INDEX IF NOT EXISTS orders_status ON orders (status, updated_at);
"""

# pending → confirmed | cancelled, once. The row is created if an event overtook
# OrderPlaced (the orders queue was behind), so the late OrderPlaced finds it decided.
_FINISH = """
INSERT INTO orders (order_id, correlation_id, status, reason, detail, shipment_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (order_id) DO UPDATE
    SET status = EXCLUDED.status, reason = EXCLUDED.reason, detail = EXCLUDED.detail,
        shipment_id = EXCLUDED.shipment_id, updated_at = now()
    WHERE orders.status = 'pending'
RETURNING true
"""


@orders.on_startup
async def create_tables(resources: Resources) -> None:
    await store.create_tables(resources, SCHEMA)


@orders.handles(OrderPlaced)
async def placed(event: OrderPlaced, ctx: Context) -> OrderDeadline | None:
    """Record the order as pending and arm its deadline."""
    created = await ctx.db.fetchval(
        "INSERT INTO orders (order_id, correlation_id, customer_id, total_cents, currency) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING RETURNING true",
        event.order_id,
        ctx.correlation_id,
        event.customer_id,
        event.total_cents,
        event.currency,
    )
    if created:
        return OrderDeadline(order_id=event.order_id)
    # Decided before its OrderPlaced arrived, or placed twice: fill in, arm nothing.
    await ctx.db.execute(
        "UPDATE orders SET customer_id = $2, total_cents = $3, currency = $4 "
        "WHERE order_id = $1 AND customer_id IS NULL",
        event.order_id,
        event.customer_id,
        event.total_cents,
        event.currency,
    )
    return None


@orders.handles(ShipmentScheduled)
async def shipped(event: ShipmentScheduled, ctx: Context) -> OrderConfirmed | None:
    """Stock, payment and shipment are in place: confirm, unless already cancelled."""
    if await _finish(ctx, event.order_id, "confirmed", shipment_id=event.shipment_id):
        return OrderConfirmed(order_id=event.order_id, shipment_id=event.shipment_id)
    return None  # cancelled meanwhile (the deadline): payments and shipping compensate


@orders.handles(StockRejected)
async def rejected(event: StockRejected, ctx: Context) -> OrderCancelled | None:
    detail = f"{event.reason}: {event.sku}" if event.sku else event.reason
    return await _cancel(ctx, event.order_id, OUT_OF_STOCK, detail)


@orders.handles(StockReleased)
async def released(event: StockReleased, ctx: Context) -> OrderCancelled | None:
    """Stock given back after a declined payment ends the order."""
    if event.reason != PAYMENT_DECLINED:
        return None  # released because the order was cancelled already
    return await _cancel(ctx, event.order_id, PAYMENT_DECLINED, event.detail)


@orders.handles(OrderDeadline)
async def deadline(event: OrderDeadline, ctx: Context) -> OrderCancelled | None:
    """The deadline came back: an order still pending is cancelled."""
    cancelled = await ctx.db.fetchval(
        "UPDATE orders SET status = 'cancelled', reason = $2, detail = $3, updated_at = now() "
        "WHERE order_id = $1 AND status = 'pending' RETURNING true",
        event.order_id,
        DEADLINE,
        "not finished within its deadline",
    )
    if not cancelled:
        return None
    return OrderCancelled(
        order_id=event.order_id, reason=DEADLINE, detail="not finished within its deadline"
    )


async def _cancel(ctx: Context, order_id: str, reason: str, detail: str) -> OrderCancelled | None:
    if await _finish(ctx, order_id, "cancelled", reason=reason, detail=detail):
        return OrderCancelled(order_id=order_id, reason=reason, detail=detail)
    return None


async def _finish(
    ctx: Context,
    order_id: str,
    status: str,
    *,
    reason: str | None = None,
    detail: str | None = None,
    shipment_id: str | None = None,
) -> bool:
    """Move a pending order to `status`; False if it had already ended."""
    moved = await ctx.db.fetchval(
        _FINISH, order_id, ctx.correlation_id, status, reason, detail, shipment_id
    )
    return bool(moved)
