"""payments: charges reserved orders; a decline is a business outcome, not an error."""

from __future__ import annotations

import uuid

from contracts.fulfilment import PaymentCaptured, PaymentDeclined, StockReserved
from workers import Context, Worker

payments = Worker("payments")

#: Orders above this amount are declined (a stand-in for the gateway's decision).
LIMIT_CENTS = 100_000


@payments.handles(StockReserved)
async def charge(event: StockReserved, ctx: Context) -> PaymentCaptured | PaymentDeclined:
    """Capture the order's total, or decline it."""
    if event.total_cents > LIMIT_CENTS:
        return PaymentDeclined(order_id=event.order_id, reason="amount over limit")
    payment_id = uuid.uuid5(uuid.NAMESPACE_URL, f"payment:{event.order_id}").hex
    return PaymentCaptured(
        order_id=event.order_id,
        payment_id=payment_id,
        amount_cents=event.total_cents,
        currency=event.currency,
    )
