"""The message every scenario sends: one ~300-byte OrderPlaced in fleet's wire format.

Body: the event's fields as compact JSON. Properties: ``type``, ``message_id``
(unique per message), ``correlation_id``, ``content_type``, persistent
``delivery_mode``, ``timestamp`` and a ``version`` header, as DESIGN's wire
format says any AMQP client publishes them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fulfilment.contracts.inventory import StockReserved
from fulfilment.contracts.orders import OrderLine, OrderPlaced
from pamqp.commands import Basic

from contracts import encode

JSON = "application/json"
PERSISTENT = 2
#: The header the paced publisher stamps with `time.monotonic_ns()` (latency scenario).
SENT_NS = "x-bench-sent-ns"

ORDER = OrderPlaced(
    order_id="ord-2025-000481516",
    customer_id="cust-00042-b7e1c9f3",
    lines=[
        OrderLine(sku="APL-GALA-1KG", qty=2, unit_price_cents=349),
        OrderLine(sku="BRD-SOURDOUGH-800G", qty=1, unit_price_cents=525),
        OrderLine(sku="CHS-COMTE-18M-250G", qty=3, unit_price_cents=899),
    ],
    total_cents=3920,
    currency="EUR",
)
BODY: bytes = encode(ORDER)


def properties(message_id: str, *, sent_ns: int | None = None) -> Basic.Properties:
    """fleet's wire-format properties for one OrderPlaced."""
    headers: dict[str, object] = {"version": ORDER.__version__}  # the current version: no upcast
    if sent_ns is not None:
        headers[SENT_NS] = sent_ns
    return Basic.Properties(
        content_type=JSON,
        delivery_mode=PERSISTENT,
        message_id=message_id,
        correlation_id=message_id,
        message_type="OrderPlaced",
        timestamp=datetime.now(UTC),
        headers=headers,  # type: ignore[arg-type]
    )


def reserve(order: OrderPlaced) -> StockReserved:
    """The saga step's follow-on event: the stock of every line is reserved."""
    return StockReserved(
        order_id=order.order_id,
        customer_id=order.customer_id,
        reservation_id="res-" + order.order_id,
        lines=order.lines,
        total_cents=order.total_cents,
        currency=order.currency,
    )
