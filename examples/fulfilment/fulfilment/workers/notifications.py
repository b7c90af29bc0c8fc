"""notifications: tells the customer how their order ended, and about refunds.

Table `notifications_sent`: one row per notification, unique per message, so
a redelivered event never notifies twice. The notifications themselves go out
as signed outbound webhooks: the subscription `webhooks.notifications` in
fleet.yaml takes the same events, and `fleet webhooks run` POSTs them
to the receiver (the stand-in's /webhooks/notifications in the reference fleet).
"""

from __future__ import annotations

from fulfilment.contracts import OrderCancelled, OrderConfirmed, PaymentRefunded
from fulfilment.workers import store
from workers import Context, Resources, Worker

notifications = Worker("notifications", database=True)

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications_sent (
    id         bigserial   PRIMARY KEY,
    order_id   text        NOT NULL,
    kind       text        NOT NULL,
    message_id text        NOT NULL UNIQUE,
    text       text        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notifications_order ON notifications_sent (order_id);
"""


@notifications.on_startup
async def create_tables(resources: Resources) -> None:
    await store.create_tables(resources, SCHEMA)


@notifications.handles(OrderConfirmed)
async def confirmed(event: OrderConfirmed, ctx: Context) -> None:
    await _send(ctx, event.order_id, "confirmed", f"Order {event.order_id} is on its way.")


@notifications.handles(OrderCancelled)
async def cancelled(event: OrderCancelled, ctx: Context) -> None:
    await _send(
        ctx, event.order_id, "cancelled", f"Order {event.order_id} was cancelled ({event.reason})."
    )


@notifications.handles(PaymentRefunded)
async def refunded(event: PaymentRefunded, ctx: Context) -> None:
    amount = f"{event.amount_cents / 100:.2f} {event.currency}"
    await _send(ctx, event.order_id, "refunded", f"{amount} for order {event.order_id} refunded.")


async def _send(ctx: Context, order_id: str, kind: str, text: str) -> None:
    await ctx.db.execute(
        "INSERT INTO notifications_sent (order_id, kind, message_id, text) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (message_id) DO NOTHING",
        order_id,
        kind,
        ctx.message_id,
        text,
    )
