"""Inventory facts: stock reserved for an order, refused, or released again."""

from __future__ import annotations

from contracts.event import Event
from contracts.fulfilment.orders import Cents, Currency, OrderLine
from contracts.registry import register


@register
class StockReserved(Event, frozen=True, kw_only=True):
    """Every line of the order is reserved; payment may proceed."""

    __routing_key__ = "stock.reserved"

    order_id: str
    customer_id: str
    reservation_id: str
    lines: list[OrderLine]
    total_cents: Cents
    currency: Currency = "EUR"


@register
class StockRejected(Event, frozen=True, kw_only=True):
    """At least one line could not be reserved; nothing was held."""

    __routing_key__ = "stock.rejected"

    order_id: str
    reason: str
    sku: str | None = None


@register
class StockReleased(Event, frozen=True, kw_only=True):
    """A reservation was given back (compensation).

    `reason` is `payment-declined` (the order is to be cancelled) or
    `order-cancelled` (it already was, for `detail`'s reason).
    """

    __routing_key__ = "stock.released"

    order_id: str
    reservation_id: str
    reason: str
    detail: str = ""
