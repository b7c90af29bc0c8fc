"""orders: follows each order to its end, confirmed or cancelled."""

from __future__ import annotations

from contracts.fulfilment import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    ShipmentScheduled,
    StockRejected,
    StockReleased,
)
from workers import Context, Worker

orders = Worker("orders")

#: order id → status (in this process's memory).
status: dict[str, str] = {}


@orders.handles(OrderPlaced)
async def placed(event: OrderPlaced, ctx: Context) -> None:
    status.setdefault(event.order_id, "pending")


@orders.handles(ShipmentScheduled)
async def shipped(event: ShipmentScheduled, ctx: Context) -> OrderConfirmed | None:
    if status.get(event.order_id) == "cancelled":
        return None
    status[event.order_id] = "confirmed"
    return OrderConfirmed(order_id=event.order_id, shipment_id=event.shipment_id)


@orders.handles(StockRejected)
async def rejected(event: StockRejected, ctx: Context) -> OrderCancelled | None:
    return _cancel(event.order_id, f"stock: {event.reason}")


@orders.handles(StockReleased)
async def released(event: StockReleased, ctx: Context) -> OrderCancelled | None:
    return _cancel(event.order_id, event.reason)


def _cancel(order_id: str, reason: str) -> OrderCancelled | None:
    if status.get(order_id) in ("cancelled", "confirmed"):
        return None
    status[order_id] = "cancelled"
    return OrderCancelled(order_id=order_id, reason=reason)
