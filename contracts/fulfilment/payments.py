"""Payment facts: the order's amount captured, declined by the gateway, or refunded."""

from __future__ import annotations

from contracts.event import Event
from contracts.fulfilment.orders import Cents, Currency
from contracts.registry import register


@register
class PaymentCaptured(Event, frozen=True, kw_only=True):
    """The gateway captured the order's amount."""

    __routing_key__ = "payment.captured"

    order_id: str
    customer_id: str
    payment_id: str
    amount_cents: Cents
    currency: Currency = "EUR"


@register
class PaymentDeclined(Event, frozen=True, kw_only=True):
    """The gateway declined the charge: a business outcome, not an error."""

    __routing_key__ = "payment.declined"

    order_id: str
    reason: str


@register
class PaymentRefunded(Event, frozen=True, kw_only=True):
    """A captured payment was given back because the order was cancelled after all."""

    __routing_key__ = "payment.refunded"

    order_id: str
    payment_id: str
    amount_cents: Cents
    currency: Currency = "EUR"
    reason: str
