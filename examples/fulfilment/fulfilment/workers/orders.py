"""orders: follows each order to exactly one end, confirmed or cancelled.

Table `orders`: one row per order, `pending` until the first deciding event
moves it to `confirmed` or `cancelled`; nothing moves it again, so a late event
never resurrects a cancelled order. Placing an order arms its deadline: an
OrderDeadline that waits in the delay queue `order-deadlines` and comes back
here after the queue's ttl.

An event about an order never placed moves nothing: it fails with UnknownOrder,
retried (its OrderPlaced may only be late, handled in another slot or waiting
in a retry tier) and then parked. An OrderPlaced parked by any worker of the
fleet (its Fault, see `contracts.faults`) cancels the order, so the steps that
went ahead give back what they hold.
"""

from __future__ import annotations

from contracts import Fault
from fulfilment.contracts import (
    DEADLINE,
    OUT_OF_STOCK,
    PAYMENT_DECLINED,
    UNPROCESSABLE,
    OrderCancelled,
    OrderConfirmed,
    OrderDeadline,
    OrderPlaced,
    ShipmentScheduled,
    StockRejected,
    StockReleased,
)
from fulfilment.workers import store
from workers import Context, Resources, Worker

orders = Worker("orders", database=True)

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

# pending → confirmed | cancelled, once; the row is locked until the handler's
# transaction ends. No row: the order was never placed (or its OrderPlaced is late).
_FINISH = """
WITH known AS (SELECT status FROM orders WHERE order_id = $1 FOR UPDATE),
moved AS (
    UPDATE orders SET status = $3, reason = $4, detail = $5, shipment_id = $6,
                      correlation_id = coalesce(correlation_id, $2), updated_at = now()
    WHERE order_id = $1 AND status = 'pending'
    RETURNING true
)
SELECT EXISTS (SELECT 1 FROM known) AS known, EXISTS (SELECT 1 FROM moved) AS moved
"""
# A placement that failed ends the order, whether or not orders saw it placed: the
# row is created cancelled if missing, so a late OrderPlaced finds it decided.
_FAIL = """
INSERT INTO orders (order_id, correlation_id, status, reason, detail)
VALUES ($1, $2, 'cancelled', $3, $4)
ON CONFLICT (order_id) DO UPDATE
    SET status = 'cancelled', reason = EXCLUDED.reason, detail = EXCLUDED.detail,
        updated_at = now()
    WHERE orders.status = 'pending'
RETURNING true
"""


class UnknownOrder(Exception):
    """An event about an order orders has no record of (retried, then parked)."""

    def __init__(self, order_id: str, event: str):
        super().__init__(f"no order {order_id!r} was placed: {event} changes nothing")


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
    if await _finish(
        ctx, event.order_id, "confirmed", shipment_id=event.shipment_id, event=ctx.event_type
    ):
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


@orders.handles(Fault.of(OrderPlaced))
async def placement_failed(fault: Fault[OrderPlaced], ctx: Context) -> OrderCancelled | None:
    """An OrderPlaced was parked (here or by inventory): the order cannot go on.

    A placement that never decoded started nothing anywhere, so there is
    nothing to cancel; any other ends the order, and OrderCancelled makes the
    steps that went ahead with it give back what they hold.
    """
    if fault.message is None:
        return None
    order_id = fault.message.order_id
    detail = f"{fault.worker} parked its OrderPlaced ({fault.reason}): {fault.error}"[:1000]
    cancelled = await ctx.db.fetchval(_FAIL, order_id, ctx.correlation_id, UNPROCESSABLE, detail)
    if not cancelled:
        return None  # ended already
    return OrderCancelled(order_id=order_id, reason=UNPROCESSABLE, detail=detail)


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
    if await _finish(
        ctx, order_id, "cancelled", reason=reason, detail=detail, event=ctx.event_type
    ):
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
    event: str,
) -> bool:
    """Move a pending order to `status`; False if it had already ended.

    Raises:
        UnknownOrder: orders has no record of the order.
    """
    row = await ctx.db.fetchrow(
        _FINISH, order_id, ctx.correlation_id, status, reason, detail, shipment_id
    )
    if row is None or not row["known"]:  # (the query always returns its one row)
        raise UnknownOrder(order_id, event)
    return bool(row["moved"])
