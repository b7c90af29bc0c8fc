"""Order facts: the saga starts with OrderPlaced and ends confirmed or cancelled."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.event import Event
from contracts.registry import register

Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Cents = Annotated[int, msgspec.Meta(ge=0)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]

#: Why an order was cancelled (`OrderCancelled.reason`).
OUT_OF_STOCK = "out-of-stock"
PAYMENT_DECLINED = "payment-declined"
DEADLINE = "deadline"


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One SKU and quantity of an order, priced in minor units."""

    sku: Sku
    qty: Quantity
    unit_price_cents: Cents


@register
class OrderPlaced(Event, frozen=True, kw_only=True):
    """A customer placed an order; the saga's first event."""

    __routing_key__ = "order.placed"

    order_id: str
    customer_id: str
    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1)]
    total_cents: Cents
    currency: Currency = "EUR"


@register
class OrderDeadline(Event, frozen=True, kw_only=True):
    """The saga's deadline, armed when the order is placed.

    orders publishes it to the delay queue `order-deadlines`, which holds it
    for the deadline (the queue's `delay.ttl`) and then hands it back to orders:
    an order still pending then is cancelled with reason `deadline`.
    """

    __routing_key__ = "order.deadline"

    order_id: str


@register
class OrderConfirmed(Event, frozen=True, kw_only=True):
    """Stock, payment and shipment are all in place: the saga succeeded."""

    __routing_key__ = "order.confirmed"

    order_id: str
    shipment_id: str


@register
class OrderCancelled(Event, frozen=True, kw_only=True):
    """The saga ended without fulfilment.

    `reason` is `out-of-stock`, `payment-declined` or `deadline`; `detail` says
    more (the SKU, the gateway's words). Every step that holds something for
    the order (stock, money, a shipment) gives it back when it sees this.
    """

    __routing_key__ = "order.cancelled"

    order_id: str
    reason: str
    detail: str = ""
