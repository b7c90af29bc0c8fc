"""payments: charges reserved orders at the payment gateway, and refunds cancelled ones.

The charge goes over HTTP with the message id as idempotency key: a retried
charge (in process, through a delay tier, or after a crash) is the same charge
to the gateway, never a second one. A decline is a business outcome
(PaymentDeclined); a gateway error or timeout raises and is retried.

Tables:
- `payment_orders`: one row per order: `captured`, `declined`, `refunded`, or
  `void` (cancelled before it was charged: a late StockReserved charges nothing).
- `payment_ledger`: the money: one `capture` and at most one `refund` per
  order (unique), so the ledger cannot hold an order twice.
- `payment_attempts`: every charge key sent to the gateway, committed before
  the call. A cancellation voids the keys the books do not account for, so
  a charge whose process died before its commit is given back too.
"""

from __future__ import annotations

import structlog

from fulfilment.contracts import (
    OrderCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    StockReserved,
)
from fulfilment.workers import store
from fulfilment.workers.clients import Declined, GatewayClient
from workers import Context, Resources, Worker

payments = Worker("payments", database=True)
log = structlog.get_logger("fleet.payments")

SCHEMA = """
CREATE TABLE IF NOT EXISTS payment_orders (
    order_id     text        PRIMARY KEY,
    status       text        NOT NULL
                             CHECK (status IN ('new', 'captured', 'declined', 'refunded', 'void')),
    charge_key   text,
    payment_id   text,
    amount_cents bigint,
    currency     text,
    reason       text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS payment_ledger (
    id              bigserial   PRIMARY KEY,
    order_id        text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('capture', 'refund')),
    amount_cents    bigint      NOT NULL,
    currency        text        NOT NULL,
    payment_id      text        NOT NULL,
    idempotency_key text        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind)
);
CREATE TABLE IF NOT EXISTS payment_attempts (
    order_id        text        NOT NULL,
    idempotency_key text        NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, idempotency_key)
);
"""
_ORDERS = "payment_orders"
_ATTEMPTS = "payment_attempts"
_LEDGER = """
INSERT INTO payment_ledger (order_id, kind, amount_cents, currency, payment_id, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6)
"""


class _Held:
    """What the handlers use beside `ctx.db`, opened by the startup hook."""

    pool: object = None
    gateway: GatewayClient | None = None


held = _Held()


@payments.on_startup
async def start(resources: Resources) -> None:
    held.pool = await store.create_tables(resources, SCHEMA)
    held.gateway = GatewayClient.from_env()


@payments.on_shutdown
async def stop(resources: Resources) -> None:
    if held.gateway is not None:
        await held.gateway.aclose()


def _gateway() -> GatewayClient:
    assert held.gateway is not None, "the startup hook opens the gateway client"
    return held.gateway


@payments.handles(StockReserved)
async def charge(event: StockReserved, ctx: Context) -> PaymentCaptured | PaymentDeclined | None:
    """Capture the order's total, or report the gateway's decline."""
    _, created = await store.claim(ctx.db, _ORDERS, event.order_id, "new")
    if not created:
        return None  # charged or declined already, or cancelled before the charge
    key = ctx.message_id
    await store.note_attempt(held.pool, _ATTEMPTS, event.order_id, key)
    answer = await _gateway().charge(
        key=key,
        order_id=event.order_id,
        customer_id=event.customer_id,
        amount_cents=event.total_cents,
        currency=event.currency,
    )
    if isinstance(answer, Declined):
        await ctx.db.execute(
            "UPDATE payment_orders SET status = 'declined', charge_key = $2, reason = $3, "
            "updated_at = now() WHERE order_id = $1",
            event.order_id,
            key,
            answer.reason,
        )
        return PaymentDeclined(order_id=event.order_id, reason=answer.reason)
    await ctx.db.execute(
        "UPDATE payment_orders SET status = 'captured', charge_key = $2, payment_id = $3, "
        "amount_cents = $4, currency = $5, updated_at = now() WHERE order_id = $1",
        event.order_id,
        key,
        answer.charge_id,
        event.total_cents,
        event.currency,
    )
    await ctx.db.execute(
        _LEDGER, event.order_id, "capture", event.total_cents, event.currency, answer.charge_id, key
    )
    return PaymentCaptured(
        order_id=event.order_id,
        customer_id=event.customer_id,
        payment_id=answer.charge_id,
        amount_cents=event.total_cents,
        currency=event.currency,
    )


@payments.handles(OrderCancelled)
async def refund(event: OrderCancelled, ctx: Context) -> PaymentRefunded | None:
    """The order ended without fulfilment: give back what was captured for it."""
    row, _ = await store.claim(ctx.db, _ORDERS, event.order_id, "void")
    if row["status"] == "captured":
        refunded = await _gateway().refund(key=row["charge_key"])
        await ctx.db.execute(
            "UPDATE payment_orders SET status = 'refunded', reason = $2, updated_at = now() "
            "WHERE order_id = $1",
            event.order_id,
            event.reason,
        )
        await ctx.db.execute(
            _LEDGER,
            event.order_id,
            "refund",
            row["amount_cents"],
            row["currency"],
            row["payment_id"],
            row["charge_key"],
        )
        log.info("payment.refunded", order_id=event.order_id, gateway=refunded.status)
        return PaymentRefunded(
            order_id=event.order_id,
            payment_id=row["payment_id"],
            amount_cents=row["amount_cents"],
            currency=row["currency"],
            reason=event.reason,
        )
    if row["status"] == "void":
        # Not charged in our books; a charge whose process died before its commit
        # may still have reached the gateway. Void every key we sent.
        for key in await store.attempted_keys(ctx.db, _ATTEMPTS, event.order_id):
            voided = await _gateway().refund(key=key)
            if voided.status == "refunded":
                log.warning(
                    "payment.orphan_refunded",
                    order_id=event.order_id,
                    key=key,
                    amount_cents=voided.amount_cents,
                )
    return None
