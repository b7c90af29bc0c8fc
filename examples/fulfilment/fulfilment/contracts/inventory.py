"""Inventory facts: stock reserved for an order, refused, or released again."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.event import Event
from contracts.registry import register
from contracts.types import Identifier, Text
from fulfilment.contracts.orders import MAX_LINES, Cents, Currency, OrderLine


@register
class StockReserved(Event, frozen=True, kw_only=True):
    """Every line of the order is reserved; payment may proceed."""

    __routing_key__ = "stock.reserved"

    order_id: Identifier
    customer_id: Identifier
    reservation_id: Identifier
    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    total_cents: Cents
    currency: Currency = "EUR"


@register
class StockRejected(Event, frozen=True, kw_only=True):
    """At least one line could not be reserved; nothing was held."""

    __routing_key__ = "stock.rejected"

    order_id: Identifier
    reason: Identifier
    sku: Identifier | None = None


@register
class StockReleased(Event, frozen=True, kw_only=True):
    """A reservation was given back (compensation).

    `reason` is `payment-declined` (the order is to be cancelled) or
    `order-cancelled` (it already was, for `detail`'s reason).
    """

    __routing_key__ = "stock.released"

    order_id: Identifier
    reservation_id: Identifier
    reason: Identifier
    detail: Text = ""
