"""shipping: books a carrier for paid orders, and calls the booking off for cancelled ones.

The booking goes over HTTP with the message id as idempotency key, so a retried
booking is one shipment. A carrier error or timeout raises and is retried; a
saga stuck here is ended by its deadline.

Tables:
- `shipments`: one row per order: `scheduled`, `cancelled`, or `void`
  (cancelled before it was booked: a late PaymentCaptured books nothing).
- `shipping_attempts`: every booking key sent to the carrier, committed before
  the call, so a cancellation can call off a booking whose commit never happened.
"""

from __future__ import annotations

from fulfilment.contracts import (
    OrderCancelled,
    PaymentCaptured,
    ShipmentCancelled,
    ShipmentScheduled,
)
from fulfilment.workers import store
from fulfilment.workers.clients import CarrierClient
from workers import Context, Resources, Worker

shipping = Worker("shipping", database=True)

SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    order_id    text        PRIMARY KEY,
    status      text        NOT NULL CHECK (status IN ('new', 'scheduled', 'cancelled', 'void')),
    booking_key text,
    shipment_id text,
    carrier     text,
    reason      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shipping_attempts (
    order_id        text        NOT NULL,
    idempotency_key text        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, idempotency_key)
);
"""
_SHIPMENTS = "shipments"
_ATTEMPTS = "shipping_attempts"


class _Held:
    """What the handlers use beside `ctx.db`, opened by the startup hook."""

    pool: object = None
    carrier: CarrierClient | None = None


held = _Held()


@shipping.on_startup
async def start(resources: Resources) -> None:
    held.pool = await store.create_tables(resources, SCHEMA)
    held.carrier = CarrierClient.from_env()


@shipping.on_shutdown
async def stop(resources: Resources) -> None:
    if held.carrier is not None:
        await held.carrier.aclose()


def _carrier() -> CarrierClient:
    assert held.carrier is not None, "the startup hook opens the carrier client"
    return held.carrier


@shipping.handles(PaymentCaptured)
async def schedule(event: PaymentCaptured, ctx: Context) -> ShipmentScheduled | None:
    """Book the shipment of a paid order, unless the order was cancelled meanwhile."""
    _, created = await store.claim(ctx.db, _SHIPMENTS, event.order_id, "new")
    if not created:
        return None  # booked already, or the order was cancelled first
    key = ctx.message_id
    await store.note_attempt(held.pool, _ATTEMPTS, event.order_id, key)
    booking = await _carrier().book(key=key, order_id=event.order_id, customer_id=event.customer_id)
    await ctx.db.execute(
        "UPDATE shipments SET status = 'scheduled', booking_key = $2, shipment_id = $3, "
        "carrier = $4, updated_at = now() WHERE order_id = $1",
        event.order_id,
        key,
        booking.shipment_id,
        booking.carrier,
    )
    return ShipmentScheduled(
        order_id=event.order_id, shipment_id=booking.shipment_id, carrier=booking.carrier
    )


@shipping.handles(OrderCancelled)
async def cancel(event: OrderCancelled, ctx: Context) -> ShipmentCancelled | None:
    """The order ended without fulfilment: call off its booking, if there is one."""
    row, _ = await store.claim(ctx.db, _SHIPMENTS, event.order_id, "void")
    if row["status"] == "scheduled":
        await _carrier().cancel(key=row["booking_key"])
        await ctx.db.execute(
            "UPDATE shipments SET status = 'cancelled', reason = $2, updated_at = now() "
            "WHERE order_id = $1",
            event.order_id,
            event.reason,
        )
        return ShipmentCancelled(
            order_id=event.order_id, shipment_id=row["shipment_id"], reason=event.reason
        )
    if row["status"] == "void":
        for key in await store.attempted_keys(ctx.db, _ATTEMPTS, event.order_id):
            await _carrier().cancel(key=key)
    return None
