"""inventory: reserves stock for placed orders and releases it when payment fails."""

from __future__ import annotations

import uuid

from contracts.fulfilment import (
    OrderPlaced,
    PaymentDeclined,
    StockRejected,
    StockReleased,
    StockReserved,
)
from workers import Context, Worker

inventory = Worker("inventory")

#: Stock on hand per SKU (in this process's memory).
stock: dict[str, int] = {"apple": 10_000, "pear": 5_000, "plum": 50}
#: order id → (reservation id, lines reserved)
reservations: dict[str, tuple[str, dict[str, int]]] = {}


@inventory.handles(OrderPlaced)
async def reserve(event: OrderPlaced, ctx: Context) -> StockReserved | StockRejected:
    """Reserve every line, or none of them."""
    wanted: dict[str, int] = {}
    for line in event.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.qty
    for sku, qty in wanted.items():
        if stock.get(sku, 0) < qty:
            return StockRejected(order_id=event.order_id, reason="out of stock", sku=sku)
    for sku, qty in wanted.items():
        stock[sku] -= qty
    reservation_id = uuid.uuid5(uuid.NAMESPACE_URL, f"reservation:{event.order_id}").hex
    reservations[event.order_id] = (reservation_id, wanted)
    return StockReserved(
        order_id=event.order_id,
        customer_id=event.customer_id,
        reservation_id=reservation_id,
        lines=event.lines,
        total_cents=event.total_cents,
        currency=event.currency,
    )


@inventory.handles(PaymentDeclined)
async def release(event: PaymentDeclined, ctx: Context) -> StockReleased | None:
    """Compensation: give the order's stock back."""
    held = reservations.pop(event.order_id, None)
    if held is None:
        return None
    reservation_id, lines = held
    for sku, qty in lines.items():
        stock[sku] = stock.get(sku, 0) + qty
    return StockReleased(
        order_id=event.order_id,
        reservation_id=reservation_id,
        reason=f"payment declined: {event.reason}",
    )
