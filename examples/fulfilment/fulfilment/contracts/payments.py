"""Payment facts: the order's amount captured, declined by the gateway, or refunded."""

from __future__ import annotations

from contracts.event import Event
from contracts.registry import register
from contracts.types import Identifier, Text
from fulfilment.contracts.orders import Cents, Currency


@register
class PaymentCaptured(Event, frozen=True, kw_only=True):
    """The gateway captured the order's amount."""

    __routing_key__ = "payment.captured"

    order_id: Identifier
    customer_id: Identifier
    payment_id: Identifier
    amount_cents: Cents
    currency: Currency = "EUR"


@register
class PaymentDeclined(Event, frozen=True, kw_only=True):
    """The gateway declined the charge: a business outcome, not an error."""

    __routing_key__ = "payment.declined"

    order_id: Identifier
    reason: Text


@register
class PaymentRefunded(Event, frozen=True, kw_only=True):
    """A captured payment was given back because the order was cancelled after all."""

    __routing_key__ = "payment.refunded"

    order_id: Identifier
    payment_id: Identifier
    amount_cents: Cents
    currency: Currency = "EUR"
    reason: Text
