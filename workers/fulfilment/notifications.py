"""notifications: tells the customer how their order ended."""

from __future__ import annotations

from contracts.fulfilment import OrderCancelled, OrderConfirmed
from workers import Context, Worker

notifications = Worker("notifications")


@notifications.handles(OrderConfirmed)
async def confirmed(event: OrderConfirmed, ctx: Context) -> None:
    ctx.log.info("notification.order_confirmed", order_id=event.order_id)


@notifications.handles(OrderCancelled)
async def cancelled(event: OrderCancelled, ctx: Context) -> None:
    ctx.log.info("notification.order_cancelled", order_id=event.order_id, reason=event.reason)
