"""Order facts: the saga starts with OrderPlaced and ends confirmed or cancelled."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.event import Event
from contracts.evolution import downcaster, upcaster
from contracts.registry import register
from contracts.types import NO_NUL, Identifier, NonNegativeInt64, Text

# Every field is bounded, so the ingress refuses what PostgreSQL could not
# store (a bigint past int64, text with NUL) instead of accepting an order
# that can never be processed.
Sku = Annotated[str, NO_NUL, msgspec.Meta(min_length=1, max_length=64)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Cents = NonNegativeInt64
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
#: Lines of one order: enough for any basket, bounded for the rows behind it.
MAX_LINES = 100

#: Why an order was cancelled (`OrderCancelled.reason`).
OUT_OF_STOCK = "out-of-stock"
PAYMENT_DECLINED = "payment-declined"
DEADLINE = "deadline"
#: Its OrderPlaced was parked by a worker of the fleet (a Fault[OrderPlaced]).
UNPROCESSABLE = "unprocessable"


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One SKU and quantity of an order, priced in minor units."""

    sku: Sku
    qty: Quantity
    unit_price_cents: Cents


@register
class OrderPlacedV1(Event, frozen=True, kw_only=True):
    """A customer placed an order (version 1: before orders said where they came from)."""

    __wire_name__ = "OrderPlaced"
    __routing_key__ = "order.placed"

    order_id: Identifier
    customer_id: Identifier
    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    total_cents: Cents
    currency: Currency = "EUR"


@register
class OrderPlaced(Event, frozen=True, kw_only=True):
    """A customer placed an order; the saga's first event.

    Version 2: `source` says where the order came from (`web`, `api`, `phone`,
    `unknown` when nobody said, as for every order placed as version 1).
    """

    __version__ = 2
    __routing_key__ = "order.placed"

    order_id: Identifier
    customer_id: Identifier
    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]
    total_cents: Cents
    currency: Currency = "EUR"
    source: Identifier = "unknown"


@upcaster
def order_placed_v2(old: OrderPlacedV1) -> OrderPlaced:
    """An order placed as version 1 came from a source nobody recorded."""
    return OrderPlaced(
        order_id=old.order_id,
        customer_id=old.customer_id,
        lines=old.lines,
        total_cents=old.total_cents,
        currency=old.currency,
        source="unknown",
    )


@downcaster
def order_placed_v1(new: OrderPlaced) -> OrderPlacedV1:
    """For a consumer still on version 1: the same order, without its source."""
    return OrderPlacedV1(
        order_id=new.order_id,
        customer_id=new.customer_id,
        lines=new.lines,
        total_cents=new.total_cents,
        currency=new.currency,
    )


@register
class OrderDeadline(Event, frozen=True, kw_only=True):
    """The saga's deadline, armed when the order is placed.

    orders publishes it to the delay queue `order-deadlines`, which holds it
    for the deadline (the queue's `delay.ttl`) and then hands it back to orders:
    an order still pending then is cancelled with reason `deadline`.
    """

    __routing_key__ = "order.deadline"

    order_id: Identifier


@register
class OrderConfirmed(Event, frozen=True, kw_only=True):
    """Stock, payment and shipment are all in place: the saga succeeded."""

    __routing_key__ = "order.confirmed"

    order_id: Identifier
    shipment_id: Identifier


@register
class OrderCancelled(Event, frozen=True, kw_only=True):
    """The saga ended without fulfilment.

    `reason` is `out-of-stock`, `payment-declined`, `deadline` or `unprocessable`
    (its OrderPlaced was parked by a worker of the fleet); `detail` says
    more (the SKU, the gateway's words). Every step that holds something for
    the order (stock, money, a shipment) gives it back when it sees this.
    """

    __routing_key__ = "order.cancelled"

    order_id: Identifier
    reason: Identifier
    detail: Text = ""
